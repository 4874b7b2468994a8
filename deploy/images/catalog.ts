/**
 * The images the project ships, named as the chart and the example manifests refer to them, so that an
 * image imported into a node's containerd is the one a `helm install` or `kubectl apply` asks for.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadManifests } from '../../api/v1alpha1/manifests.js';

/** One image built from one of the project's Dockerfiles. */
export interface ImageSpec {
  /** Short name: what `--only` takes and the archive's file name (`<name>.oci.tar`). */
  name: string;
  /** Full reference, e.g. ghcr.io/eventide-dev/eventide-operator:0.1.0. */
  ref: string;
  /** Dockerfile path relative to the repository (the build context). */
  dockerfile: string;
  buildArgs: Record<string, string>;
}

interface ImageBlock {
  repository: string;
  tag?: string;
}

const FUNCTION_MANIFESTS = 'functions/food-ordering/manifests/functions.yaml';

/** `repository:tag`, the tag defaulting to the chart's appVersion as the chart's `eventide.image` helper does. */
function chartImage(block: ImageBlock, appVersion: string): string {
  return `${block.repository}:${block.tag || appVersion}`;
}

/** The last path segment of a reference's repository: ghcr.io/x/food-validate-order:0.1.0 → food-validate-order. */
export function shortName(ref: string): string {
  const repository = ref.replace(/@.*$/, '').replace(/:[^/:]*$/, '');
  return repository.slice(repository.lastIndexOf('/') + 1);
}

/** Every image: the operator, the dispatcher, the function runtime base, then one per food-ordering Function. */
export function imageCatalog(repoRoot: string): ImageSpec[] {
  const chart = parse(readFileSync(join(repoRoot, 'charts/eventide/Chart.yaml'), 'utf8')) as { appVersion: string };
  const values = parse(readFileSync(join(repoRoot, 'charts/eventide/values.yaml'), 'utf8')) as {
    operator: { image: ImageBlock };
    dispatcher: { image: ImageBlock };
    functionRuntime: { image: ImageBlock };
  };
  const chartImages: ImageSpec[] = [
    { ref: chartImage(values.operator.image, chart.appVersion), dockerfile: 'deploy/Dockerfile.operator' },
    { ref: chartImage(values.dispatcher.image, chart.appVersion), dockerfile: 'deploy/Dockerfile.dispatcher' },
    { ref: chartImage(values.functionRuntime.image, chart.appVersion), dockerfile: 'functions/runtime/Dockerfile.base' },
  ].map((image) => ({ ...image, name: shortName(image.ref), buildArgs: {} }));
  // Loaded as the dispatcher loads them: validated, so a typo in an image there fails here with its field named.
  const functions = loadManifests([join(repoRoot, FUNCTION_MANIFESTS)]).functions.map((fn) => ({
    name: shortName(fn.spec.image),
    ref: fn.spec.image,
    dockerfile: 'functions/food-ordering/Dockerfile',
    buildArgs: { FUNCTION_NAME: fn.metadata.name },
  }));
  return [...chartImages, ...functions];
}
