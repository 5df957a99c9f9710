// .github/workflows: valid for GitHub Actions (@action-validator/core, the workflow JSON schema), tests on
// every pull request and push, deploys by OIDC role assumption only, prod only from a release tag
// through a protected environment.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateWorkflow } from '@action-validator/core';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const WORKFLOWS = join(ROOT, '.github/workflows');

interface Step {
  uses?: string;
  run?: string;
  with?: Record<string, string | number | boolean>;
}
interface Job {
  if?: string;
  needs?: string | string[];
  uses?: string;
  environment?: string | { name: string; url?: string };
  permissions?: Record<string, string> | string;
  concurrency?: { group: string; 'cancel-in-progress'?: boolean } | string;
  steps?: Step[];
}
interface Workflow {
  name: string;
  on: Record<string, { branches?: string[]; 'branches-ignore'?: string[]; tags?: string[] } | null>;
  permissions?: Record<string, string>;
  jobs: Record<string, Job>;
}

const files = readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f)).sort();
const text = (file: string) => readFileSync(join(WORKFLOWS, file), 'utf8');
const load = (file: string) => parse(text(file)) as Workflow;

/**
 * Long-lived AWS keys a workflow refers to: any secret whose name holds ACCESS_KEY (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, MY_ACCESS_KEY...), in dot or index syntax, and the key inputs of
 * configure-aws-credentials, whatever feeds them.
 */
function accessKeyReferences(workflow: string): string[] {
  const found: string[] = [];
  for (const m of workflow.matchAll(/secrets\s*(?:\.\s*([A-Za-z0-9_-]+)|\[\s*['"]([^'"]+)['"]\s*\])/g)) {
    const name = m[1] ?? m[2]!;
    if (/ACCESS_?KEY/i.test(name)) found.push(`secrets.${name}`);
  }
  for (const m of workflow.matchAll(/^\s*(aws-access-key-id|aws-secret-access-key)\s*:/gm)) found.push(m[1]!);
  // keys put into the environment by name, from wherever
  for (const m of workflow.matchAll(/^\s*(AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY)\s*:/gm)) found.push(m[1]!);
  return found;
}

const envName = (job: Job) => (typeof job.environment === 'string' ? job.environment : job.environment?.name);
const needsOf = (job: Job) => (job.needs === undefined ? [] : Array.isArray(job.needs) ? job.needs : [job.needs]);
const deploys = (job: Job) => (job.steps ?? []).some((s) => /\bcdk deploy\b/.test(s.run ?? ''));

describe('GitHub workflows', () => {
  it('exist: ci and deploy', () => {
    expect(files).toEqual(expect.arrayContaining(['ci.yml', 'deploy.yml']));
  });

  it.each(files)('%s validates against the workflow schema (@action-validator/core)', (file) => {
    const state = validateWorkflow(text(file));
    expect(state.errors).toEqual([]);
  });

  it.each(files)('%s refers to no access-key secret and passes no access keys', (file) => {
    expect(accessKeyReferences(text(file))).toEqual([]);
  });

  it.each(files)('%s pins every action to a major version or a commit', (file) => {
    const steps = Object.values(load(file).jobs).flatMap((j) => j.steps ?? []);
    for (const { uses } of steps) {
      if (uses === undefined || uses.startsWith('./')) continue;
      expect(uses).toMatch(/^[\w.-]+\/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$/);
    }
  });

  it('ci: tests on every pull request and push (main and tags through deploy.yml), with the services, as .ci/run does', () => {
    const ci = load('ci.yml');
    expect(Object.keys(ci.on)).toEqual(expect.arrayContaining(['pull_request', 'push', 'workflow_call']));
    expect(ci.on.pull_request?.branches).toBeUndefined();
    const deploy = load('deploy.yml');
    // pushes ci.yml leaves out are exactly the ones deploy.yml tests before deploying
    expect(ci.on.push?.['branches-ignore']).toEqual(deploy.on.push?.branches);
    expect(Object.values(deploy.jobs).some((j) => j.uses === './.github/workflows/ci.yml')).toBe(true);
    const steps = Object.values(ci.jobs).flatMap((j) => j.steps ?? []);
    expect(steps.some((s) => /^bash \.ci\/run\b/.test(s.run ?? ''))).toBe(true);
    expect(ci.permissions).toEqual({ contents: 'read' });
  });

  describe('deploy.yml', () => {
    const wf = load('deploy.yml');
    const jobs = Object.entries(wf.jobs).filter(([, j]) => deploys(j));
    const byStage = new Map(jobs.map(([name, j]) => [envName(j), { name, job: j }]));

    it('deploys dev, staging and prod, each job in its environment, after the tests', () => {
      expect([...byStage.keys()].sort()).toEqual(['dev', 'prod', 'staging']);
      for (const [stage, { job }] of byStage) {
        const cdk = job.steps!.find((s) => /\bcdk deploy\b/.test(s.run ?? ''))!;
        expect(cdk.run).toMatch(/-c "?stage=\$STAGE"?/);
        expect((job as Job & { env?: Record<string, string> }).env?.STAGE).toBe(stage);
        // every deploy is downstream of the test job
        const upstream = (j: Job): string[] => needsOf(j).flatMap((n) => [n, ...upstream(wf.jobs[n]!)]);
        expect(upstream(job)).toContain('test');
      }
    });

    it('assumes an AWS role by OIDC (id-token: write), the role ARN from a variable', () => {
      expect(wf.permissions?.['id-token']).toBeUndefined(); // only the deploy jobs get a token
      for (const [, { name, job }] of byStage) {
        expect(job.permissions, name).toMatchObject({ 'id-token': 'write' });
        const creds = job.steps!.filter((s) => s.uses?.startsWith('aws-actions/configure-aws-credentials@'));
        expect(creds, name).toHaveLength(1);
        expect(String(creds[0]!.with?.['role-to-assume'])).toMatch(/^\$\{\{\s*vars\.[A-Z_]+\s*\}\}$/);
        expect(creds[0]!.with?.['aws-access-key-id']).toBeUndefined();
        // credentials come before the deploy
        const at = (pred: (s: Step) => boolean) => job.steps!.findIndex(pred);
        expect(at((s) => s.uses?.startsWith('aws-actions/') === true)).toBeLessThan(at((s) => /\bcdk deploy\b/.test(s.run ?? '')));
      }
    });

    it('deploys dev from main only; staging, then prod, from a v* tag only', () => {
      expect(wf.on.push?.branches).toEqual(['main']);
      expect(wf.on.push?.tags).toEqual(['v*']);
      expect(byStage.get('dev')!.job.if).toBe("github.ref == 'refs/heads/main'");
      for (const stage of ['staging', 'prod']) expect(byStage.get(stage)!.job.if).toBe("startsWith(github.ref, 'refs/tags/v')");
      expect(needsOf(byStage.get('prod')!.job)).toContain(byStage.get('staging')!.name);
    });

    it('runs one deploy per stage at a time, never cancelling one under way', () => {
      const groups = new Set<string>();
      for (const [stage, { job }] of byStage) {
        expect(typeof job.concurrency, stage).toBe('object');
        const c = job.concurrency as { group: string; 'cancel-in-progress'?: boolean };
        expect(c.group).toContain(stage!);
        expect(c['cancel-in-progress']).toBe(false);
        groups.add(c.group);
      }
      expect(groups.size).toBe(3);
    });
  });

  describe('the checks catch what they are for', () => {
    it('reports access-key secrets and key inputs, in any spelling', () => {
      const bad = `name: bad
on: push
jobs:
  deploy:
    runs-on: ubuntu-24.04
    steps:
      - uses: aws-actions/configure-aws-credentials@v4
        with:
          aws-access-key-id: \${{ secrets.AWS_ACCESS_KEY_ID }}
          aws-secret-access-key: \${{ secrets['AWS_SECRET_ACCESS_KEY'] }}
          aws-region: eu-west-1
      - run: echo "\${{ secrets.PROD_ACCESS_KEY }}"
`;
      expect(validateWorkflow(bad).errors).toEqual([]); // valid for GitHub: only our check refuses it
      expect(accessKeyReferences(bad)).toEqual([
        'secrets.AWS_ACCESS_KEY_ID',
        'secrets.AWS_SECRET_ACCESS_KEY',
        'secrets.PROD_ACCESS_KEY',
        'aws-access-key-id',
        'aws-secret-access-key',
      ]);
      expect(accessKeyReferences('env:\n  AWS_SECRET_ACCESS_KEY: ${{ vars.K }}\n')).toEqual(['AWS_SECRET_ACCESS_KEY']);
      expect(accessKeyReferences('role-to-assume: ${{ vars.AWS_DEPLOY_ROLE_ARN }}\n  token: ${{ secrets.GITHUB_TOKEN }}')).toEqual([]);
    });

    it('the validator reports an invalid workflow', () => {
      const invalid = 'name: broken\non: push\njobs:\n  test:\n    runs-on: ubuntu-24.04\n    stepz:\n      - run: npm test\n';
      expect(validateWorkflow(invalid).errors.length).toBeGreaterThan(0);
      const noJobs = 'name: broken\non: push\n';
      expect(validateWorkflow(noJobs).errors.length).toBeGreaterThan(0);
    });
  });
});
