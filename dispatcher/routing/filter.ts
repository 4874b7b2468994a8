import { type ASTNode, parse as parseCel } from '@marcbachmann/cel-js';
import { EventideError } from '../../common/errors.js';

/** What a filter sees: the operation and the old and new rows as plain JS values. */
export interface FilterInput {
  op: string;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
}

/** A compiled trigger filter. */
export interface CompiledFilter {
  readonly source: string;
  /** Columns the expression reads as `old.<col>` or `new.<col>`, to check against the table at start-up. */
  readonly columns: ReadonlySet<string>;
  /** Whether the expression reads `old` at all (a word "old" inside a string literal does not count). */
  readonly readsOld: boolean;
  /** True when the row change passes; throws FilterEvaluationError when the expression cannot be evaluated. */
  matches(input: FilterInput): boolean;
}

/** A trigger's filter that does not compile; the message names the trigger and where the expression breaks. */
export class InvalidFilterError extends EventideError {
  override readonly code = 'EVENTIDE_INVALID_FILTER';
  override readonly name = 'InvalidFilterError';
}

/** A filter that failed on a particular row (a missing key, a type mismatch). */
export class FilterEvaluationError extends Error {
  readonly code = 'EVENTIDE_FILTER_EVALUATION';
  override readonly name = 'FilterEvaluationError';
}

function readsIdentifier(node: ASTNode, name: string): boolean {
  if (node.op === 'id') return node.args === name;
  const args: unknown = node.args;
  const children = Array.isArray(args) ? args.flat(2) : [args];
  return children.some((child) => Boolean(child && typeof child === 'object' && 'op' in child && readsIdentifier(child as ASTNode, name)));
}

function collectColumns(node: ASTNode, into: Set<string>): void {
  if (node.op === '.' || node.op === '.?') {
    const [target, field] = node.args as [ASTNode, string];
    if (target.op === 'id' && (target.args === 'new' || target.args === 'old')) into.add(field);
  }
  const args: unknown = node.args;
  const children = Array.isArray(args) ? args.flat(2) : [args];
  for (const child of children) {
    if (child && typeof child === 'object' && 'op' in child) collectColumns(child as ASTNode, into);
  }
}

/**
 * Compiles a CEL filter. CEL is what Kubernetes users already write in validation rules; it is
 * side-effect free and cannot loop, so a filter can never hang or escape the dispatcher.
 */
export function compileFilter(source: string): CompiledFilter {
  const evaluate = parseCel(source);
  const columns = new Set<string>();
  collectColumns(evaluate.ast, columns);
  return {
    source,
    columns,
    readsOld: readsIdentifier(evaluate.ast, 'old'),
    matches(input) {
      let result: unknown;
      try {
        result = evaluate({ op: input.op, old: input.old, new: input.new });
      } catch (error) {
        throw new FilterEvaluationError(`filter "${source}" failed: ${(error as Error).message.split('\n')[0]}`, { cause: error });
      }
      if (typeof result !== 'boolean') {
        throw new FilterEvaluationError(`filter "${source}" returned ${typeof result}, expected a boolean`);
      }
      return result;
    },
  };
}
