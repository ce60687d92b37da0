import type { NodeInfo } from '@conclave/protocol';
import type { DashboardSources } from './dashboard-sources.js';
import { chatFragment, jobsFragment, nodesFragment, panelErrorOf, queueFragment, unavailable } from './fragments.js';
import type { SafeHtml } from './html.js';
import type { Panel } from './pages.js';

/** The panels every page shares; the log tail is each page's own. */
export type FleetPanel = Exclude<Panel, 'logs'>;
export const FLEET_PANELS: readonly FleetPanel[] = ['nodes', 'queue', 'jobs', 'chat'];

export interface FleetSnapshot {
  /** Empty when the registry did not answer. */
  nodes: NodeInfo[];
  /** Why the registry did not answer; then no node name can be resolved. */
  nodesError?: unknown;
  panels: Record<FleetPanel, SafeHtml>;
  atMs: number;
}

export interface DashboardFeedOptions {
  sources: DashboardSources;
  updateIntervalMs: number;
  /** How long one source may take before its panel says it is unavailable. */
  sourceTimeoutMs: number;
  /** Jobs per list of the jobs panel. */
  jobsPerList: number;
  messagesPerRoom: number;
  now?: () => number;
}

type Listener = (changed: Partial<Record<FleetPanel, SafeHtml>>) => void;

/**
 * Reads the sources once per update tick, while at least one page listens, and tells each
 * listener which panels changed: a hundred open pages cost the sources what one does.
 */
export class DashboardFeed {
  private readonly listeners = new Set<Listener>();
  private latest: FleetSnapshot | undefined;
  private inFlight: Promise<FleetSnapshot> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly o: DashboardFeedOptions) {
    this.now = o.now ?? Date.now;
  }

  /** The latest snapshot when it is younger than a tick, else a new one (shared with a read under way). */
  current(): Promise<FleetSnapshot> {
    if (this.latest && this.now() - this.latest.atMs < this.o.updateIntervalMs) return Promise.resolve(this.latest);
    return this.refresh();
  }

  /** Ticks run while someone listens; returns the unsubscribe. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    this.schedule();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
    };
  }

  close(): void {
    this.closed = true;
    this.listeners.clear();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.closed || this.listeners.size === 0) return;
    // One tick after the last has finished: a slow source never stacks reads.
    this.timer = setTimeout(() => {
      void this.refresh().finally(() => {
        this.timer = undefined;
        this.schedule();
      });
    }, this.o.updateIntervalMs);
  }

  private refresh(): Promise<FleetSnapshot> {
    this.inFlight ??= this.read().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async read(): Promise<FleetSnapshot> {
    const { sources } = this.o;
    const [nodes, jobs, queue, rooms] = await Promise.allSettled([
      this.bounded(sources.nodes(), 'node registry'),
      this.bounded(sources.jobs(this.o.jobsPerList), 'job store'),
      this.bounded(sources.queue(), 'job queue'),
      this.bounded(sources.chatRooms(this.o.messagesPerRoom), 'chat'),
    ]);
    const nodeList = nodes.status === 'fulfilled' ? nodes.value : [];
    const atMs = this.now();
    const panels: Record<FleetPanel, SafeHtml> = {
      nodes: nodes.status === 'fulfilled' ? nodesFragment(nodes.value, atMs) : unavailable('nodes', panelErrorOf(nodes.reason)),
      queue: queue.status === 'fulfilled' ? queueFragment(queue.value) : unavailable('queue', panelErrorOf(queue.reason)),
      jobs: jobs.status === 'fulfilled' ? jobsFragment(jobs.value, nodeList) : unavailable('jobs', panelErrorOf(jobs.reason)),
      chat: rooms.status === 'fulfilled' ? chatFragment(rooms.value) : unavailable('chat', panelErrorOf(rooms.reason)),
    };
    const previous = this.latest;
    const snapshot: FleetSnapshot = { nodes: nodeList, panels, atMs, ...(nodes.status === 'rejected' ? { nodesError: nodes.reason as unknown } : {}) };
    this.latest = snapshot;
    const changed: Partial<Record<FleetPanel, SafeHtml>> = {};
    for (const panel of FLEET_PANELS) {
      if (previous?.panels[panel].text !== panels[panel].text) changed[panel] = panels[panel];
    }
    if (Object.keys(changed).length > 0 && !this.closed) {
      for (const listener of this.listeners) listener(changed);
    }
    return snapshot;
  }

  private bounded<T>(promise: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not answer within ${this.o.sourceTimeoutMs} ms`)), this.o.sourceTimeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }
}
