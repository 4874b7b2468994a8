export * from './duration.js';
export * from './event.js';
export * from './manifests.js';
export * from './resources.js';
export * from './schema.js';
export * from './validate.js';
