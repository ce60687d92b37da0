import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { DASHBOARD_CSS, DASHBOARD_ICON } from './dashboard-style.js';
import { ASSET_PATHS } from './pages.js';

export interface Asset {
  type: string;
  body: Buffer;
}

const require = createRequire(import.meta.url);

/** Files of htmx and its SSE extension, from this package's dependencies: nothing is fetched at run time. */
const PACKAGE_FILES: Readonly<Record<string, string>> = {
  [ASSET_PATHS.htmx]: 'htmx.org/dist/htmx.min.js',
  [ASSET_PATHS.sse]: 'htmx-ext-sse/dist/sse.min.js',
};

/** The static files under /dashboard/assets, each read once and kept. */
export class DashboardAssets {
  private readonly cache = new Map<string, Promise<Asset>>();

  has(path: string): boolean {
    return path === ASSET_PATHS.css || path === ASSET_PATHS.icon || path in PACKAGE_FILES;
  }

  get(path: string): Promise<Asset> {
    let asset = this.cache.get(path);
    if (!asset) {
      asset = this.load(path);
      // A failed read is tried again at the next request, not remembered.
      asset.catch(() => this.cache.delete(path));
      this.cache.set(path, asset);
    }
    return asset;
  }

  private async load(path: string): Promise<Asset> {
    if (path === ASSET_PATHS.css) return { type: 'text/css; charset=utf-8', body: Buffer.from(DASHBOARD_CSS, 'utf8') };
    if (path === ASSET_PATHS.icon) return { type: 'image/svg+xml', body: Buffer.from(DASHBOARD_ICON, 'utf8') };
    const file = PACKAGE_FILES[path];
    if (file === undefined) throw new Error(`no asset ${path}`);
    return { type: 'text/javascript; charset=utf-8', body: await readFile(require.resolve(file)) };
  }
}
