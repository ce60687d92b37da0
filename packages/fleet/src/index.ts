export { startLocalFleet } from './local-fleet.js';
export { FLEET_VERSION } from './version.js';
export type { LocalFleet, LocalFleetOptions } from './local-fleet.js';
export { DEMO_MODEL_NAME, buildDemoModel, demoExpected, demoInput } from './demo-model.js';
export { FLEET_MAIN } from './launch.js';
