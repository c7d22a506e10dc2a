/**
 * The CDK app: `npx cdk synth` / `npx cdk deploy` (cdk.json runs this file with tsx).
 * Stack props can be set from context; see infra/context-props.ts.
 */
import { App } from 'aws-cdk-lib';
import { ClusterwiseStack } from './clusterwise-stack.js';
import { propsFromContext } from './context-props.js';

const app = new App();
new ClusterwiseStack(app, 'Clusterwise', {
  stackName: 'Clusterwise',
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  ...propsFromContext((key) => app.node.tryGetContext(key)),
});
app.synth();
