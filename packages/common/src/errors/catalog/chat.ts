import { defineErrors } from './define-errors.js';

/** Group chat errors (no owner yet). */
export const CHAT_ERRORS = defineErrors({});
