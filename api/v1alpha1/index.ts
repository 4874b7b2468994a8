export * from './schema.js';
export * from './resources.js';
export * from './validate.js';
export * from './manifests.js';
export * from './duration.js';
export * from './event.js';
