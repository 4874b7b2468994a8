/**
 * An error whose message is the whole story for the user: it names what is wrong and where (the file,
 * trigger, field, flag or secret) and how to fix it. The `eventide` command prints it as
 * "eventide: <message>" with no stack, since a stack would only bury the fix. Bugs and unexpected
 * failures stay plain `Error`s and keep their stack.
 *
 * `code` is stable across releases (tests and callers branch on it, never on the message, which may
 * be reworded); `name` is the class name, for logs.
 */
export abstract class EventideError extends Error {
  abstract readonly code: string;
}
