/** Base of the platform's named errors: `name` is the class name, the original stays as `cause`. */
export class PlatformError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Input that does not match its schema (exchange message, stream record, tool call, config). */
export class ValidationError extends PlatformError {
  constructor(
    message: string,
    readonly issues: readonly string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A configuration value or CLI flag that cannot be used. */
export class ConfigError extends PlatformError {}

/** A stream record whose bytes cannot be decoded into events. */
export class RecordDecodeError extends PlatformError {}
