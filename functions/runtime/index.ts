/**
 * The eventide function runtime: give serve() a handler and it takes care of the HTTP server,
 * CloudEvents parsing, signature checks, health checks and graceful shutdown.
 *
 * ```ts
 * import { serve, PermanentError } from '@eventide/runtime';
 * await serve(async (event, { logger }) => {
 *   if (event.data.new?.total === null) throw new PermanentError('order without a total');
 *   logger.info('validating order');
 * });
 * ```
 */
export { serve, type ServeHandle } from './serve.js';
export { ATTEMPT_HEADER } from '../../api/v1alpha1/event.js';
export { PermanentError, RetryLaterError, isPermanentError, isRetryLaterError } from './errors.js';
export { RuntimeSettingsError, type BatchHandler, type EventHandler, type HandlerContext, type ServeOptions } from './settings.js';
export type { BatchResponse, EventideEvent, JsonValue, Row, RowChange, RowOperation } from '../../api/v1alpha1/event.js';
