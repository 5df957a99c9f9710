#!/usr/bin/env node
// CDK app entry: `npx cdk synth -c stage=dev|staging|prod`, or `cdklocal synth -c stage=local` (docs/deployment.md).
import { App } from 'aws-cdk-lib';
import { defineStage } from '../lib/platform-app.js';

const app = new App();
defineStage(app);
app.synth();
