/** A flag's value as an argv builder takes it; undefined and false leave the flag out. */
export type CliFlagValue = string | number | boolean | undefined;

/**
 * Typed options as command-line flags: `{ dataDir: 'x', httpPort: -1, json: true }` gives
 * `['--data-dir=x', '--http-port=-1', '--json']`. Each flag with its value is one word, so a
 * value that starts with a dash (`-1`) is never read as a flag of its own.
 */
export function toCliFlags<T extends { [K in keyof T]: CliFlagValue }>(flags: T): string[] {
  const words: string[] = [];
  for (const [key, value] of Object.entries(flags) as Array<[string, CliFlagValue]>) {
    if (value === undefined || value === false) continue;
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    words.push(value === true ? flag : `${flag}=${String(value)}`);
  }
  return words;
}
