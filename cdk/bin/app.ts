#!/usr/bin/env node
// CDK app entry: `npx cdk synth -c stage=dev|staging|prod` (see cdk.json).
import { App } from 'aws-cdk-lib';
import { definePlatform } from '../lib/platform-app.js';

const app = new App();
definePlatform(app);
app.synth();
