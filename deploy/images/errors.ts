import { EventideError } from '../../common/errors.js';

/** A step of `npm run images` failed; the message names the image and the step, and ends with the tool's output. */
export class ImageBuildError extends EventideError {
  readonly code = 'EVENTIDE_IMAGE_BUILD';
  override readonly name = 'ImageBuildError';
}

/** `npm run images` was given a flag it does not know, or a bad value. */
export class ImagesUsageError extends EventideError {
  readonly code = 'EVENTIDE_IMAGES_USAGE';
  override readonly name = 'ImagesUsageError';
}
