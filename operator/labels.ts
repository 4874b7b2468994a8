/** Labels, names and identities every object the operator manages carries. */

/** The server-side apply field manager: the operator owns exactly the fields it applies under this name. */
export const FIELD_MANAGER = 'eventide-operator';

export const LABEL_NAME = 'app.kubernetes.io/name';
export const LABEL_INSTANCE = 'app.kubernetes.io/instance';
export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_PART_OF = 'app.kubernetes.io/part-of';

export const MANAGED_BY = 'eventide';
export const PART_OF = 'eventide';

export const COMPONENT_FUNCTION = 'function';
export const COMPONENT_DISPATCHER = 'dispatcher';

/** Selects every object the operator created; its informers watch only these. */
export const MANAGED_SELECTOR = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;

/** The in-cluster URL of a Function's Service; the dispatcher's --function-url-template has the same form. */
export function functionUrl(name: string, namespace: string): string {
  return `http://${name}.${namespace}.svc.cluster.local`;
}

/** The dispatcher's --function-url-template, matching `functionUrl`. */
export const FUNCTION_URL_TEMPLATE = 'http://{name}.{namespace}.svc.cluster.local';
