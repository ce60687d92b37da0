export {
  type ElementType,
  type HostTensor,
  type ModelTensorSpec,
  dataConstructor,
  elementCount,
  hostTensor,
  hostTensorBytes,
} from './host-tensor.js';
export type { TinyModel } from './tiny-model.js';
export { affineModel, type AffineModelOptions } from './affine-model.js';
export { addMulModel, type AddMulModelOptions } from './add-mul-model.js';
export { identityModel } from './identity-model.js';
export { heavyModel, type HeavyModelOptions } from './heavy-model.js';
export { reluChainModel, type ReluChainModelOptions } from './relu-chain-model.js';
export { notOnnxBytes } from './not-onnx.js';
export { writeModel, writeModelWithExternalData, type ExternalDataFiles } from './write-model.js';
export { IR_VERSION, OPSET_VERSION } from './onnx-graph.js';
