/** Where a command writes: process.stdout/stderr in main.ts, string collectors in tests. */
export interface TextOut {
  write(chunk: string): unknown;
}

export interface CliIo {
  readonly stdout: TextOut;
  readonly stderr: TextOut;
}

/** Collects everything written, for tests and for commands that buffer. */
export class StringOut implements TextOut {
  text = '';

  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}
