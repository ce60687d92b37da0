/** The demo model's public name. */
export declare const DEMO_MODEL_ID: string;
/** Writes the demo model directory (see build-demo-model.mjs). */
export declare function writeDemoModel(
  dir: string,
  options?: { cache?: boolean; externalData?: boolean; onnxSubdir?: boolean; hiddenPad?: number },
): void;
