/**
 * How a Secret key reaches the dispatcher: the operator maps each referenced Secret key into an
 * environment variable of the dispatcher container (never a ConfigMap), named by this function; the
 * dispatcher reads the same name. Locally, users set the variable themselves.
 */
export function secretEnvName(ref: { name: string; key: string }): string {
  const clean = (s: string) => s.toUpperCase().replace(/[^A-Z0-9]/g, '_');
  return `EVENTIDE_SECRET_${clean(ref.name)}__${clean(ref.key)}`;
}

/** The environment variable that carries the source database URL into the dispatcher. */
export const DATABASE_URL_ENV = 'EVENTIDE_DATABASE_URL';
