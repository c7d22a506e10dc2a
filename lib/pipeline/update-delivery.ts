/**
 * The aggregator's side of failure handling (lib/pipeline/failures.ts): one delivery of the updates
 * queue, with a run that cannot go on failed at once and a broken message dead-lettered at once.
 */
import { describeError, isRetryable } from '../errors.js';
import { handleUpdates, type EndedRun } from './aggregator.js';
import { deadLetter, failureOf } from './failures.js';
import type { QueueMessage } from './ports.js';
import { parseMessage, UpdateMessage, type RunFailedMessage } from './protocol.js';
import { silentLog, type RoleContext } from './run.js';

/**
 * One delivery of the updates queue, as the aggregator Lambda gets it: each run's updates applied
 * together (handleUpdates). Returns the ids of the messages to deliver again (the partial batch
 * response): those of a run whose updates failed transiently, and of any message that could be
 * neither parsed nor dead-lettered. A run that cannot go on (a permanent error) is failed with the
 * reason instead, and its messages are acknowledged.
 */
export async function handleUpdateDelivery(ctx: RoleContext, delivered: QueueMessage[]): Promise<{ retry: string[]; ended: EndedRun[] }> {
  const log = ctx.log ?? silentLog;
  const retry: string[] = [];
  const ended: EndedRun[] = [];
  const byRun = new Map<string, { ids: string[]; messages: UpdateMessage[] }>();
  const add = (id: string, message: UpdateMessage) => {
    const key = `${message.dataset}/${message.runId}`;
    const run = byRun.get(key) ?? { ids: [], messages: [] };
    run.ids.push(id);
    run.messages.push(message);
    byRun.set(key, run);
  };
  for (const m of delivered) {
    try {
      add(m.id, parseMessage(UpdateMessage, m.body, ctx.updates.name));
    } catch (error) {
      const reason = describeError(error);
      log.error('update failed', { messageId: m.id, receiveCount: m.receiveCount, reason, permanent: !isRetryable(error) });
      if (isRetryable(error)) {
        retry.push(m.id);
        continue;
      }
      // A broken update may have been a round's completion: the run it names cannot finish.
      const named = failureOf(m.body, reason);
      const failure: RunFailedMessage | undefined = named && { kind: 'run-failed', dataset: named.dataset, runId: named.runId, roundId: 'unknown', reason: `update ${m.id} cannot be read: ${reason}` };
      if (failure) add(m.id, failure);
      try {
        if (await deadLetter(ctx.deadLetter?.updates, m, { groupId: failure?.runId ?? 'unreadable' })) {
          log.error('update dead-lettered at once', { messageId: m.id, reason });
        } else if (!failure) retry.push(m.id);
      } catch (sendError) {
        log.error('update could not be dead-lettered', { messageId: m.id, reason: describeError(sendError) });
        retry.push(m.id);
      }
    }
  }
  for (const { ids, messages } of byRun.values()) {
    try {
      ended.push(...(await handleUpdates(ctx, messages)));
    } catch (error) {
      const reason = describeError(error);
      const { dataset, runId } = messages[0];
      log.error('update failed', { messageIds: ids, runId, reason, permanent: !isRetryable(error) });
      if (isRetryable(error)) {
        retry.push(...ids);
        continue;
      }
      // Applying these updates fails the same way every time (bad numbers, a bad object): the
      // run fails with the reason now, rather than after three deliveries and a dead letter.
      const failure: RunFailedMessage = { kind: 'run-failed', dataset, runId, roundId: 'unknown', reason: `the aggregator cannot go on: ${reason}` };
      try {
        ended.push(...(await handleUpdates(ctx, [failure])));
      } catch (failError) {
        log.error('run could not be failed', { runId, reason: describeError(failError) });
        retry.push(...ids);
      }
    }
  }
  return { retry, ended };
}
