// The Python sidecar declares its own protobuf schema (no protobuf library on the boards); this
// keeps it equal to proto/conclave/v1/hailo_sidecar.proto, field by field.
import { execFileSync } from 'node:child_process';
import { protobuf, protoDir } from '@conclave/protocol';
import { describe, expect, it } from 'vitest';
import { HAILO_SIDECAR_DIR } from './fake-hailort.js';

interface PyField {
  number: number;
  type: string;
  repeated: boolean;
  oneof?: string;
}

type PySchema = Record<string, Record<string, PyField>>;

function pythonSchema(): PySchema {
  const out = execFileSync('python3', ['-m', 'conclave_hailo.wire', '--schema'], {
    cwd: HAILO_SIDECAR_DIR,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return JSON.parse(out) as PySchema;
}

/** The .proto's messages in the same shape as the Python schema. */
function protoSchema(): PySchema {
  const root = new protobuf.Root();
  const dir = protoDir();
  root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : `${dir}/${target}`);
  root.loadSync('conclave/v1/hailo_sidecar.proto', { keepCase: true });
  root.resolveAll();
  const pkg = root.lookup('conclave.v1') as protobuf.Namespace;
  const out: PySchema = {};
  for (const nested of pkg.nestedArray) {
    if (!(nested instanceof protobuf.Type) || !nested.name.startsWith('Sidecar')) continue;
    const fields: Record<string, PyField> = {};
    for (const field of nested.fieldsArray) {
      const isMap = field instanceof protobuf.MapField;
      const entry: PyField = {
        number: field.id,
        type: isMap ? `map<${field.keyType},${field.type}>` : field.type,
        repeated: field.repeated,
      };
      const oneof = field.partOf?.name;
      if (oneof) entry.oneof = oneof;
      fields[field.name] = entry;
    }
    out[nested.name] = fields;
  }
  return out;
}

describe('the Python sidecar schema', () => {
  it('declares every message and field of hailo_sidecar.proto, with its number and type', () => {
    const proto = protoSchema();
    expect(Object.keys(proto).length).toBeGreaterThan(10);
    expect(pythonSchema()).toEqual(proto);
  });
});
