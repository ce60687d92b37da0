import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { detectHailo, parseThrottled, pcieGenOf, readBoardHealth } from './hailo-detection.js';

const roots: string[] = [];

async function fakeTree(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'hailo-sysfs-'));
  roots.push(root);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  return root;
}

afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => rm(root, { recursive: true, force: true })));
});

const PI5_GEN3 = {
  'dev/hailo0': '',
  'sys/module/hailo_pci/version': '4.20.0\n',
  'sys/bus/pci/devices/0000:00:00.0/vendor': '0x14e4\n',
  'sys/bus/pci/devices/0001:01:00.0/vendor': '0x1e60\n',
  'sys/bus/pci/devices/0001:01:00.0/current_link_speed': '8.0 GT/s PCIe\n',
  'sys/bus/pci/devices/0001:01:00.0/current_link_width': '1\n',
  'sys/bus/pci/devices/0001:01:00.0/max_link_speed': '8.0 GT/s PCIe\n',
  'sys/class/thermal/thermal_zone0/temp': '52350\n',
  'sys/devices/platform/soc/soc:firmware/get_throttled': '0\n',
};

describe('detectHailo', () => {
  it('reads a healthy Gen 3 board without warnings', async () => {
    const root = await fakeTree(PI5_GEN3);
    expect(await detectHailo({ root })).toEqual({
      present: true,
      devicePath: '/dev/hailo0',
      driverVersion: '4.20.0',
      pcie: { address: '0001:01:00.0', gen: 3, width: 1, speed: '8.0 GT/s PCIe', maxGen: 3, maxSpeed: '8.0 GT/s PCIe' },
      temperatureC: 52.4,
      throttled: '0x0',
      throttledFlags: [],
      warnings: [],
    });
  });

  it('warns NODE-HEALTH-912 at Gen 2, the Pi 5 default', async () => {
    const root = await fakeTree({ ...PI5_GEN3, 'sys/bus/pci/devices/0001:01:00.0/current_link_speed': '5.0 GT/s PCIe\n' });
    const found = await detectHailo({ root });
    expect(found.pcie?.gen).toBe(2);
    expect(found.warnings.map((w) => w.code)).toEqual(['NODE-HEALTH-912']);
    expect(found.warnings[0]!.message).toContain('Gen 2 x1 (5.0 GT/s PCIe) at 0001:01:00.0');
  });

  it('warns NODE-HEALTH-913 with the names of the throttled flags', async () => {
    const root = await fakeTree({ ...PI5_GEN3, 'sys/devices/platform/soc/soc:firmware/get_throttled': '50005\n' });
    const found = await detectHailo({ root });
    expect(found.throttled).toBe('0x50005');
    expect(found.throttledFlags).toEqual(['under-voltage', 'throttled', 'under-voltage occurred', 'throttling occurred']);
    expect(found.warnings.map((w) => w.code)).toEqual(['NODE-HEALTH-913']);
  });

  it('finds the throttled flags under another platform bus', async () => {
    const { 'sys/devices/platform/soc/soc:firmware/get_throttled': _, ...rest } = PI5_GEN3;
    const root = await fakeTree({ ...rest, 'sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled': '0x80000\n' });
    const found = await detectHailo({ root });
    expect(found.throttled).toBe('0x80000');
    expect(found.throttledFlags).toEqual(['soft temperature limit occurred']);
  });

  it('says why when there is no device, and leaves missing facts out instead of failing', async () => {
    const root = await fakeTree({});
    expect(await detectHailo({ root })).toEqual({
      present: false,
      devicePath: '/dev/hailo0',
      warnings: [],
      reason: 'no /dev/hailo0, no Hailo PCIe device and no hailo_pci driver',
    });
  });

  it('names a visible chip without its driver', async () => {
    const root = await fakeTree({
      'sys/bus/pci/devices/0001:01:00.0/vendor': '0x1e60\n',
      'sys/bus/pci/devices/0001:01:00.0/current_link_speed': 'Unknown\n',
    });
    const found = await detectHailo({ root });
    expect(found.present).toBe(false);
    expect(found.reason).toBe('no /dev/hailo0: a Hailo PCIe device is at 0001:01:00.0 but the hailo_pci driver is not loaded');
    expect(found.pcie).toEqual({ address: '0001:01:00.0', speed: 'Unknown' });
    expect(found.warnings).toEqual([]);
  });
});

describe('readBoardHealth', () => {
  it('reads temperature and throttled flags alone', async () => {
    const root = await fakeTree({ 'sys/class/thermal/thermal_zone0/temp': '61000', 'sys/devices/platform/soc/soc:firmware/get_throttled': 'garbage' });
    expect(await readBoardHealth({ root })).toEqual({ temperatureC: 61, warnings: [] });
  });
});

describe('parsers', () => {
  it('maps link speeds to generations', () => {
    expect([pcieGenOf('2.5 GT/s PCIe'), pcieGenOf('5 GT/s'), pcieGenOf('8.0 GT/s PCIe'), pcieGenOf('16.0 GT/s PCIe')]).toEqual([1, 2, 3, 4]);
    expect(pcieGenOf('Unknown')).toBeUndefined();
  });

  it('reads throttled hex with or without 0x', () => {
    expect(parseThrottled('throttled=0x4')?.active).toEqual(['throttled']);
    expect(parseThrottled('0')?.flags).toBe(0);
    expect(parseThrottled('')).toBeUndefined();
  });
});
