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

export type { BatchResponse, EventideEvent, JsonValue, Row, RowChange, RowOperation } from '../../api/v1alpha1/event.js';
export { ATTEMPT_HEADER } from '../../api/v1alpha1/event.js';
export { isPermanentError, isRetryLaterError, PermanentError, RetryLaterError } from './errors.js';
export { type ServeHandle, serve } from './serve.js';
export { type BatchHandler, type EventHandler, type HandlerContext, RuntimeSettingsError, type ServeOptions } from './settings.js';
