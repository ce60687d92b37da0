export { startLocalFleet, DEMO_MODEL_NAME } from './local-fleet.js';
export type { LocalFleet, LocalFleetOptions } from './local-fleet.js';
