/**
 * `pnpm bench hailo`: what the Hailo shim adds per frame, against HailoRT called in process, in
 * the same run. One 640×640×3 uint8 frame at a time through a HEF whose outputs are a
 * detection-sized [100, 6] float32 tensor, on the fake HailoRT (packages/testing/fake-hailort):
 *
 *   in-process   the sidecar's device.py called in one Python process, no socket (the baseline;
 *                python3 -m conclave_hailo.inprocess_bench)
 *   sidecar      SidecarClient.infer: the frame over the unix socket, the sidecar's codec and
 *                batching, the outputs back
 *   shim         HailoBackend.run, as a job runs: input checks, the socket, and post.onnx
 *                (a Relu over the outputs) in onnxruntime on a CPU worker thread
 *
 * Added per frame = the median of an arm less the baseline's median. Target: the shim adds
 * ≤ 1 ms per frame, so that a chip at 500 frames/s (2 ms a frame) is not halved by it.
 *
 *   node packages/testing/dist/bench/hailo-bench.js [--frames 300] [--rounds 3]
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { EXIT_FAILURE, EXIT_OK, nullLogger, percentileOf, z } from '@conclave/common';
import type { WireTensor } from '@conclave/protocol';
import { CpuBackend, HailoBackend, SidecarSupervisor } from '@conclave/node-agent';
import type { BackendModel } from '@conclave/node-agent';
import { tempDir } from '../fleet.js';
import { bundleBackendModel } from '../hailo/hailo-bundle.js';
import { HAILO_SIDECAR_DIR, HAILO_SIDECAR_SCRIPT, fakeSidecarEnv, writeFakeHef } from '../hailo/fake-hailort.js';
import { hostTensor } from '../onnx/host-tensor.js';
import { encodeModel, initializer, node, onnx, spec } from '../onnx/onnx-graph.js';

const TARGET_ADDED_MS = 1;

const HEIGHT = 640;
const WIDTH = 640;
const CHANNELS = 3;
const FRAME_ELEMENTS = HEIGHT * WIDTH * CHANNELS;
const DETECTIONS = 100;
const FIELDS = 6;
const SCALE = 1 / 256;

const OptionsSchema = z.object({
  frames: z.coerce.number().int().positive().default(300),
  rounds: z.coerce.number().int().positive().default(3),
});

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { frames: { type: 'string' }, rounds: { type: 'string' } }, strict: true });
  const options = OptionsSchema.parse(values);
  const dir = await tempDir('conclave-bench-hailo-');
  const sidecarEnv = fakeSidecarEnv();
  // The baseline imports the sidecar's own package, so its directory goes on the path too.
  const env = { ...sidecarEnv, PYTHONPATH: `${sidecarEnv.PYTHONPATH}:${HAILO_SIDECAR_DIR}` };
  const files = await writeBundle(dir.path);
  const sidecar = new SidecarSupervisor({
    logger: nullLogger, socketPath: join(dir.path, 'hailo.sock'), command: ['python3', HAILO_SIDECAR_SCRIPT], env: sidecarEnv,
  });
  const cpu = await CpuBackend.create({ workers: 1, logger: nullLogger });
  const backend = new HailoBackend({
    cpu, sidecar, logger: nullLogger,
    fetchArtifact: async (artifact) => files.bySha.get(artifact.sha256)!,
    recheckIntervalMs: 3_600_000,
  });
  sidecar.start();
  try {
    const client = await sidecar.whenUp(20_000);
    await backend.load(files.model);
    const status = backend.modelBackends()[0];
    if (status?.backend !== 'hailo') throw new Error(`the bench model runs on ${status?.backend ?? 'nothing'}: ${status?.reason ?? ''}`);
    const frame: WireTensor = { dtype: 'uint8', dims: [1, HEIGHT, WIDTH, CHANNELS], raw: Buffer.alloc(FRAME_ELEMENTS, 7) };
    const sidecarFrame = [{ name: 'bench/input_layer1', dtype: 'uint8', dims: [1, HEIGHT, WIDTH, CHANNELS], data: frame.raw }];

    const arms: Record<'in-process' | 'sidecar' | 'shim', number[]> = { 'in-process': [], sidecar: [], shim: [] };
    for (let round = 0; round < options.rounds; round++) {
      arms['in-process'].push(...(await inProcess(files.hefPath, options.frames, env)));
      arms.sidecar.push(...(await timeFrames(options.frames, () => client.infer(files.model.sha256, sidecarFrame))));
      arms.shim.push(...(await timeFrames(options.frames, () => backend.run(files.model.sha256, { frame }))));
    }
    const base = percentileOf(arms['in-process'], 0.5);
    const rows = Object.entries(arms).map(([arm, ms]) => {
      const p50 = percentileOf(ms, 0.5);
      return [arm, p50.toFixed(3), percentileOf(ms, 0.99).toFixed(3), arm === 'in-process' ? '—' : (p50 - base).toFixed(3), (p50 / base).toFixed(2)];
    });
    const widths = [12, 10, 10, 12, 8];
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join(' ');
    console.log(`hailo shim, one ${HEIGHT}×${WIDTH}×${CHANNELS} uint8 frame at a time → [${DETECTIONS}, ${FIELDS}] float32, fake HailoRT; ` +
      `${options.rounds} rounds × ${options.frames} frames per arm`);
    console.log(line(['arm', 'p50 ms', 'p99 ms', 'added ms', '×base']));
    for (const row of rows) console.log(line(row));
    const added = percentileOf(arms.shim, 0.5) - base;
    const met = added <= TARGET_ADDED_MS;
    console.log(`shim adds ${added.toFixed(3)} ms per frame (target ≤ ${TARGET_ADDED_MS} ms): ${met ? 'met' : 'NOT met'}`);
    return met ? EXIT_OK : EXIT_FAILURE;
  } finally {
    await backend.dispose();
    await sidecar.stop();
    await dir.remove();
  }
}

async function timeFrames(frames: number, once: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < 20; i++) await once();
  const ms: number[] = [];
  for (let i = 0; i < frames; i++) {
    const started = performance.now();
    await once();
    ms.push(performance.now() - started);
  }
  return ms;
}

function inProcess(hefPath: string, frames: number, env: Record<string, string>): Promise<number[]> {
  return new Promise((resolve, reject) => {
    execFile('python3', ['-m', 'conclave_hailo.inprocess_bench', '--hef', hefPath, '--frames', String(frames)],
      { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`inprocess_bench failed: ${stderr || err.message}`));
        else resolve((JSON.parse(stdout) as { perFrameMs: number[] }).perFrameMs);
      });
  });
}

/**
 * The bench bundle: model.onnx (the CPU reference) takes the frame's first 600 values as 100
 * detections of 6, scaled and through a Relu; the fake HEF does the slice and scale, post.onnx
 * the Relu.
 */
async function writeBundle(dir: string): Promise<{ model: BackendModel; hefPath: string; bySha: Map<string, string> }> {
  const count = DETECTIONS * FIELDS;
  const frameSpec = spec('frame', 'uint8', ['batch', HEIGHT, WIDTH, CHANNELS]);
  const detectionsSpec = spec('detections', 'float32', ['batch', DETECTIONS, FIELDS]);
  const rawSpec = spec('raw', 'float32', ['batch', DETECTIONS, FIELDS]);
  const i64 = (name: string, values: number[]) => initializer(name, hostTensor('int64', [values.length], BigInt64Array.from(values.map(BigInt))));
  const reference = encodeModel({
    name: 'bench_reference', inputs: [frameSpec], outputs: [detectionsSpec],
    nodes: [
      node('Reshape', ['frame', 'flat_shape'], ['flat']),
      node('Slice', ['flat', 'starts', 'ends', 'axes'], ['first']),
      node('Cast', ['first'], ['first_f'], [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: 1 }]),
      node('Mul', ['first_f', 'scale'], ['scaled']),
      node('Reshape', ['scaled', 'det_shape'], ['raw']),
      node('Relu', ['raw'], ['detections']),
    ],
    initializers: [
      i64('flat_shape', [0, -1]), i64('starts', [0]), i64('ends', [count]), i64('axes', [1]), i64('det_shape', [0, DETECTIONS, FIELDS]),
      initializer('scale', hostTensor('float32', [1], Float32Array.of(SCALE))),
    ],
  });
  const post = encodeModel({ name: 'bench_post', inputs: [rawSpec], outputs: [detectionsSpec], nodes: [node('Relu', ['raw'], ['detections'])], initializers: [] });
  const paths = { model: join(dir, 'model.onnx'), post: join(dir, 'post.onnx'), hef: join(dir, 'bench.hef') };
  await writeFile(paths.model, reference);
  await writeFile(paths.post, post);
  await writeFakeHef(paths.hef, {
    arch: 'hailo8',
    inputs: [{ name: 'bench/input_layer1', shape: [HEIGHT, WIDTH, CHANNELS], dtype: 'uint8' }],
    outputs: [{ name: 'bench/detections', shape: [DETECTIONS, FIELDS], dtype: 'float32' }],
    op: { kind: 'slice_scale', count, a: SCALE },
  });
  const { model, pathsBySha } = await bundleBackendModel({
    model: { path: paths.model, inputs: [frameSpec], outputs: [detectionsSpec] },
    hef: { chip: 'hailo8', path: paths.hef },
    post: { path: paths.post, inputs: [rawSpec], outputs: [detectionsSpec] },
    manifest: {
      hailortVersion: 'fake', compilerVersion: 'fake', batchSize: 1, tolerance: { absolute: 1e-5, relative: 0 },
      inputs: [{ name: 'frame', vstream: 'bench/input_layer1', dtype: 'uint8', layout: 'NHWC' }],
      outputs: [{ name: 'raw', vstream: 'bench/detections', dtype: 'float32', layout: 'NC' }],
    },
  });
  return { model, hefPath: paths.hef, bySha: pathsBySha };
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(err);
  process.exit(EXIT_FAILURE);
});
