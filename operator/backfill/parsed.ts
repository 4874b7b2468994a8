import { type BackfillResource, InvalidResourceError, parseBackfill } from '../../api/v1alpha1/index.js';
import type { StoredBackfill } from '../cache.js';

/** A stored Backfill with the fields the API server always sets. */
export type KnownBackfill = StoredBackfill & { metadata: { name: string; namespace: string; uid: string } };

/**
 * Backfill specs, validated and defaulted once per generation: the dispatcher rewrites a running
 * backfill's status every second, which changes its resourceVersion but not its spec (the status
 * subresource leaves the generation alone), and every trigger reconcile of its source reads it again.
 */
export class ParsedBackfills {
  private readonly specs = new Map<string, { generation: number | undefined; spec: BackfillResource['spec'] | InvalidResourceError }>();

  /** The Backfill with its spec validated and defaulted, or the InvalidResourceError naming each bad field. */
  parse(stored: KnownBackfill): BackfillResource | InvalidResourceError {
    const { uid, generation } = stored.metadata;
    let cached = this.specs.get(uid);
    // Without a generation (never from the API server) there is nothing to key on: parse every time.
    if (!cached || generation === undefined || cached.generation !== generation) {
      let spec: BackfillResource['spec'] | InvalidResourceError;
      try {
        spec = parseBackfill(stored as unknown as Record<string, unknown>).spec;
      } catch (error) {
        if (!(error instanceof InvalidResourceError)) throw error;
        spec = error;
      }
      cached = { generation, spec };
      this.specs.set(uid, cached);
    }
    if (cached.spec instanceof InvalidResourceError) return cached.spec;
    return { ...(stored as unknown as BackfillResource), spec: cached.spec };
  }

  /** The valid Backfills among `stored` (not being deleted). */
  valid(stored: readonly StoredBackfill[]): BackfillResource[] {
    const out: BackfillResource[] = [];
    for (const b of stored) {
      if (!b.metadata?.uid || !b.metadata.name || !b.metadata.namespace || b.metadata.deletionTimestamp) continue;
      const parsed = this.parse(b as KnownBackfill);
      if (!(parsed instanceof InvalidResourceError)) out.push(parsed);
    }
    return out;
  }

  /** Forgets a Backfill that is gone. */
  forget(uid: string): void {
    this.specs.delete(uid);
  }
}
