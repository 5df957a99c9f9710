import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Absolute path of the repository root, so synth works from any working directory. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Absolute path of a file or folder given relative to the repository root. */
export function repoPath(relative: string): string {
  return join(REPO_ROOT, relative);
}
