import type { Queue } from 'bullmq';
import { CHAT_FLEET_ROOM } from '@conclave/protocol';
import type { ChatMessage } from '@conclave/protocol';
import { ORCHESTRATOR_MEMBER, type ChatApi } from '../chat/chat-api.js';
import type { JobStore } from '../job-store.js';
import type { NodeRegistry } from '../node-registry.js';
import { dashboardJobOf, type DashboardJob, type DashboardRoom, type DashboardSources } from './dashboard-sources.js';

/** Rooms shown: `fleet` first, then by name. */
export const MAX_ROOMS_SHOWN = 12;

/** The newest jobs read for the failed and finished lists, whatever their state: two index batches. */
export const RECENT_JOBS_READ = 200;

export interface FleetSourcesOptions {
  registry: Pick<NodeRegistry, 'list'>;
  queue: Pick<Queue, 'getJobCounts'>;
  chat: Pick<ChatApi, 'listRooms' | 'history'>;
  jobs: Pick<JobStore, 'list'>;
}

/** The dashboard's sources in a running orchestrator. */
export function fleetDashboardSources(o: FleetSourcesOptions): DashboardSources {
  return {
    nodes: () => o.registry.list(),
    jobs: (perList) => jobsOf(o.jobs, perList),
    // No types given: BullMQ counts every state.
    queue: () => o.queue.getJobCounts(),
    chatRooms: (messagesPerRoom) => chatRoomsOf(o.chat, messagesPerRoom),
  };
}

/**
 * The newest running and queued jobs (from their own index), and the newest RECENT_JOBS_READ of
 * any state, where the failed and finished ones are found: a failure older than those is in
 * `orchestrator jobs list --state failed`, not on the page.
 */
export async function jobsOf(jobs: Pick<JobStore, 'list'>, perList: number): Promise<DashboardJob[]> {
  const pages = await Promise.all([
    jobs.list({ limit: RECENT_JOBS_READ }), jobs.list({ state: 'queued', limit: perList }), jobs.list({ state: 'running', limit: perList }),
  ]);
  const byId = new Map<string, DashboardJob>();
  for (const page of pages) for (const record of page.jobs) byId.set(record.id, dashboardJobOf(record));
  return [...byId.values()].sort((a, b) => b.createdAtMs - a.createdAtMs);
}

/** The rooms with their newest messages, read as the orchestrator (which may read every room). */
export async function chatRoomsOf(chat: Pick<ChatApi, 'listRooms' | 'history'>, messagesPerRoom: number): Promise<DashboardRoom[]> {
  const rooms = (await chat.listRooms())
    .sort((a, b) => Number(b.name === CHAT_FLEET_ROOM) - Number(a.name === CHAT_FLEET_ROOM) || String(a.name).localeCompare(String(b.name)))
    .slice(0, MAX_ROOMS_SHOWN);
  return Promise.all(rooms.map(async (room) => {
    const name = room.name ?? '';
    const head = Number(room.headSeq ?? 0);
    const delivery = head > 0 ? await chat.history(ORCHESTRATOR_MEMBER, name, Math.max(0, head - messagesPerRoom), messagesPerRoom) : undefined;
    // Trimmed: the snapshot's messages stand for what the page asked for.
    const messages: ChatMessage[] = [...(delivery?.snapshot?.messages ?? []), ...(delivery?.messages ?? [])].slice(-messagesPerRoom);
    return { name, headSeq: head, members: (room.members ?? []).length, messages };
  }));
}
