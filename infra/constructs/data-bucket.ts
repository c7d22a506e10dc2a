/**
 * The one bucket of the pipeline (docs/deploy.md §2, the object layout): user data under `datasets/`,
 * run intermediates and results under `runs/`, and pointers to the latest model under `models/`.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { INTERMEDIATE_TAGS } from '../../lib/pipeline/protocol.js';

/** Key prefixes of the object layout; IAM grants and event filters are scoped with these. */
export const KeyPrefix = {
  datasets: 'datasets/',
  runs: 'runs/',
  models: 'models/',
} as const;

/**
 * Object tag that marks an intermediate: posterior versions and offloaded queue payloads, written
 * with it by the roles (lib/pipeline/protocol.ts INTERMEDIATE_TAGS, the one definition). Results,
 * manifests and run states are written without it and are kept.
 */
const [intermediateKey, intermediateValue] = Object.entries(INTERMEDIATE_TAGS)[0];
export const INTERMEDIATE_TAG = { key: intermediateKey, value: intermediateValue } as const;

export interface DataBucketProps {
  /**
   * How long tagged intermediates under `runs/` are kept. Whole days, at least one.
   * @default Duration.days(7)
   */
  readonly intermediatesRetention?: Duration;
  /**
   * What happens to the bucket when it leaves the stack. With DESTROY the bucket's objects are
   * deleted too (autoDeleteObjects), so the stack can be torn down in one step.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** An encrypted, private, TLS-only bucket whose run intermediates expire. */
export class DataBucket extends Construct {
  public readonly bucket: Bucket;

  constructor(scope: Construct, id: string, props: DataBucketProps = {}) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.bucket = new Bucket(this, 'Bucket', {
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: false,
      removalPolicy,
      autoDeleteObjects: removalPolicy === RemovalPolicy.DESTROY,
      lifecycleRules: [
        {
          // Intermediates live at runs/<name>/<runId>/posterior/… and runs/_payloads/…, next to
          // the results in runs/<name>/<runId>/result/. A lifecycle prefix cannot hold a
          // wildcard in the middle (runs/*/*/posterior/), so the rule selects by object tag
          // instead: prefix runs/ AND tag clusterwise:intermediate=true. Untagged results survive.
          id: 'ExpireRunIntermediates',
          prefix: KeyPrefix.runs,
          tagFilters: { [INTERMEDIATE_TAG.key]: INTERMEDIATE_TAG.value },
          expiration: props.intermediatesRetention ?? Duration.days(7),
        },
        {
          // S3 rejects AbortIncompleteMultipartUpload on a rule with a tag filter: separate rule.
          id: 'AbortIncompleteMultipartUploads',
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
    });
  }
}
