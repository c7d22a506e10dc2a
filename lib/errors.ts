/**
 * The one base class of clusterwise's errors (as Powertools for AWS Lambda has one per package):
 * every error the code raises on purpose is a narrow subclass of ClusterwiseError, with a `name`,
 * an optional `cause`, and a `retryable` flag that the queue handlers act on
 * (lib/pipeline/failures.ts, docs/deploy.md §9):
 *
 * - permanent (`retryable: false`): the same message would fail the same way again, because the
 *   input is wrong (a bad data file, a bad model.json, a malformed message, a result that is not
 *   finite). Such a task or update goes to its dead-letter queue at once and its run fails with
 *   the reason; retrying it three times would only delay the failure by three visibility timeouts.
 * - transient (`retryable: true`): a retry may succeed (a conditional write lost to another
 *   writer, a storage or queue call that failed). The message is redelivered, as SQS does.
 *
 * Anything else thrown (an SDK or network error, a bug) is taken as transient: `isRetryable`.
 */
export class ClusterwiseError extends Error {
  /** Whether the same request may succeed if tried again. */
  readonly retryable: boolean = false;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClusterwiseError';
  }
}

/** A shared object kept changing under conditional writes: trying again later may succeed. */
export class ConflictError extends ClusterwiseError {
  override readonly retryable = true;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConflictError';
  }
}

/**
 * An impossible call: a programming error inside clusterwise (a released batch used again, a
 * function called where it is not available). Not retried: the same call fails the same way.
 */
export class InternalError extends ClusterwiseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InternalError';
  }
}

/**
 * Whether a failure may pass on a retry: a ClusterwiseError says so itself; any other error (the
 * AWS SDK's, the network's, a bug's) is retried, since nothing says it is permanent.
 */
export function isRetryable(error: unknown): boolean {
  return error instanceof ClusterwiseError ? error.retryable : true;
}

/** `Name: message` of an error, or the value as text: what a run's failure reason and the logs show. */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
