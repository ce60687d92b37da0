// Real onnxruntime on the model as the fleet builds it, against the JS reference the fleet checks with.
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MAX_ROWS, buildDemoModel, demoExpected, demoInput } from './demo-model.js';

describe('the demo model', () => {
  let session: ort.InferenceSession;
  beforeAll(async () => {
    session = await ort.InferenceSession.create(buildDemoModel());
  });
  afterAll(() => session.release());

  it('declares x [batch, 4] in and y out', () => {
    expect(session.inputNames).toEqual(['x']);
    expect(session.outputNames).toEqual(['y']);
  });

  it('computes in onnxruntime exactly what its reference says, for every input the fleet sends', async () => {
    for (let rows = 1; rows <= DEMO_MAX_ROWS; rows++) {
      const x = demoInput(rows);
      const { y } = await session.run({ x: new ort.Tensor('float32', x.data, x.dims) });
      expect(y?.dims).toEqual([rows, 3]);
      expect([...(y?.data as Float32Array)]).toEqual([...demoExpected(x.data)]);
    }
  });

  it('is y = x·W + b with the weights the demo has always printed', () => {
    expect([...demoExpected(demoInput(3).data)]).toEqual([-3.28125, -0.5625, 0.40625, 3, 1.3125, -1.59375, -3.15625, -2.3125, 0.15625]);
    expect(() => demoInput(0)).toThrow(RangeError);
    expect(() => demoInput(DEMO_MAX_ROWS + 1)).toThrow(RangeError);
  });
});
