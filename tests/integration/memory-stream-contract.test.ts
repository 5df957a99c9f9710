import { MemoryStream } from '../../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { defineStreamBusContract } from '../support/stream-bus-contract.js';

defineStreamBusContract('in-process', async () => {
  const bus = new MemoryStream({ shards: 4 });
  // the in-process stream has one consumer group: a new subscription continues from its checkpoints
  return { bus, subscribe: async () => bus.subscribe(), dispose: () => bus.close() };
});
