import type { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';

/** Secrets Manager cannot run here: this client stands in for it, answers from `values` and counts calls. */
export function fakeSecretsClient(values: Record<string, string | undefined>) {
  const calls: string[] = [];
  return {
    calls,
    async send(command: GetSecretValueCommand) {
      const id = command.input.SecretId!;
      calls.push(id);
      if (!(id in values)) throw Object.assign(new Error('not found'), { name: 'ResourceNotFoundException' });
      return { SecretString: values[id] };
    },
  };
}
