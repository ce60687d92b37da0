import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConclaveError } from '@conclave/common';

/** The Hailo-8's PCI vendor id, as sysfs prints it. */
export const HAILO_PCI_VENDOR = '0x1e60';
/** The device node the HailoRT driver creates for the first chip, on the board. */
export const HAILO_DEVICE_PATH = '/dev/hailo0';
/** The lowest PCIe generation that does not cap the chip: Gen 2 x1 tops out near 358 fps for 640×640×3. */
export const MIN_PCIE_GEN = 3;

const DRIVER_VERSION_FILE = 'sys/module/hailo_pci/version';
const PCI_DEVICES_DIR = 'sys/bus/pci/devices';
const SOC_TEMPERATURE_FILE = 'sys/class/thermal/thermal_zone0/temp';
/**
 * Where Raspberry Pi kernels put the firmware's throttled flags (drivers/firmware/raspberrypi.c):
 * `soc/soc:firmware` on the Pi 3 and 4. On a Pi 5 / CM5 the firmware node may sit under another
 * platform bus, so when none of these exists the platform buses are searched for a `*firmware`
 * directory holding the file.
 */
export const THROTTLED_CANDIDATES: readonly string[] = [
  'sys/devices/platform/soc/soc:firmware/get_throttled',
  'sys/devices/platform/soc:firmware/get_throttled',
  'sys/devices/platform/firmware:firmware/get_throttled',
];
const PLATFORM_DIR = 'sys/devices/platform';
const THROTTLED_FILE = 'get_throttled';

/** The firmware's throttled bits (Raspberry Pi documentation, `vcgencmd get_throttled`). */
export const THROTTLED_FLAGS: Readonly<Record<number, string>> = {
  0: 'under-voltage',
  1: 'arm frequency capped',
  2: 'throttled',
  3: 'soft temperature limit',
  16: 'under-voltage occurred',
  17: 'arm frequency capping occurred',
  18: 'throttling occurred',
  19: 'soft temperature limit occurred',
};

/** Link speed per lane in GT/s → PCIe generation. */
const PCIE_GEN_BY_GTS: ReadonlyArray<readonly [number, number]> = [
  [2.5, 1], [5, 2], [8, 3], [16, 4], [32, 5], [64, 6],
];

/**
 * Every fact below is optional: absent means unknown (its file is missing or unreadable).
 * Detection never fails on one.
 */
export interface PcieLink {
  /** The PCI address (`0001:01:00.0`). */
  readonly address: string;
  readonly gen?: number;
  /** Lanes (the Pi 5 / CM5 link is x1). */
  readonly width?: number;
  /** As sysfs prints it: `5.0 GT/s PCIe`. */
  readonly speed?: string;
  readonly maxGen?: number;
  readonly maxSpeed?: string;
}

export interface ThrottledState {
  /** As the firmware prints it, normalised to `0x…`. */
  readonly raw: string;
  readonly flags: number;
  /** The names of the bits that are set. */
  readonly active: readonly string[];
}

export interface BoardHealth {
  /** SoC temperature in °C (thermal zone 0). */
  readonly temperatureC?: number;
  /** The firmware's throttled flags as `0x…`; `0x0` is a healthy board. */
  readonly throttled?: string;
  /** The names of the throttled bits set; empty on a healthy board. */
  readonly throttledFlags?: readonly string[];
  /** NODE-HEALTH-913 when any throttled flag is set. */
  readonly warnings: readonly ConclaveError[];
}

export interface HailoDetection extends BoardHealth {
  /** True when the device node exists. */
  readonly present: boolean;
  /** The device node on the board (not joined to the detection root). */
  readonly devicePath: string;
  /** The hailo_pci kernel module's version. */
  readonly driverVersion?: string;
  /** The Hailo chip's PCIe link, when sysfs lists a device of vendor 0x1e60. */
  readonly pcie?: PcieLink;
  /** NODE-HEALTH-912 below Gen 3, NODE-HEALTH-913 when throttled. */
  readonly warnings: readonly ConclaveError[];
  /** Why no device is usable, in words, when `present` is false. */
  readonly reason?: string;
}

export interface DetectionOptions {
  /** Every file is read under this directory; tests point it at a fake tree. @default '/' */
  root?: string;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch {
    return [];
  }
}

/** `8.0 GT/s PCIe` → 3; undefined when it cannot tell. */
export function pcieGenOf(speed: string | undefined): number | undefined {
  if (!speed) return undefined;
  const match = /^([\d.]+)\s*GT\/s/i.exec(speed);
  if (!match) return undefined;
  const gts = Number(match[1]);
  return PCIE_GEN_BY_GTS.find(([rate]) => Math.abs(rate - gts) < 0.01)?.[1];
}

/** The firmware prints the flags in hex, with or without `0x`; undefined when it is not that. */
export function parseThrottled(text: string | undefined): ThrottledState | undefined {
  if (text === undefined) return undefined;
  const hex = text.replace(/^throttled=/, '').replace(/^0x/i, '');
  if (!/^[0-9a-f]{1,8}$/i.test(hex)) return undefined;
  const flags = Number.parseInt(hex, 16);
  const active: string[] = [];
  for (let bit = 0; bit < 32; bit++) {
    if ((flags >>> bit) & 1) active.push(THROTTLED_FLAGS[bit] ?? `bit ${bit}`);
  }
  return { raw: `0x${flags.toString(16)}`, flags, active };
}

async function findThrottledFile(root: string): Promise<string | undefined> {
  for (const candidate of THROTTLED_CANDIDATES) {
    const path = join(root, candidate);
    if (await exists(path)) return path;
  }
  for (const bus of await listDir(join(root, PLATFORM_DIR))) {
    const busDir = join(root, PLATFORM_DIR, bus);
    const direct = join(busDir, THROTTLED_FILE);
    if (bus.endsWith('firmware') && (await exists(direct))) return direct;
    for (const entry of await listDir(busDir)) {
      if (!entry.endsWith('firmware')) continue;
      const path = join(busDir, entry, THROTTLED_FILE);
      if (await exists(path)) return path;
    }
  }
  return undefined;
}

/**
 * The board's SoC temperature and throttled flags: a few small sysfs reads, cheap enough for
 * every heartbeat.
 */
export async function readBoardHealth(options: DetectionOptions = {}): Promise<BoardHealth> {
  const root = options.root ?? '/';
  const [tempText, throttledPath] = await Promise.all([readText(join(root, SOC_TEMPERATURE_FILE)), findThrottledFile(root)]);
  const milli = tempText === undefined ? Number.NaN : Number(tempText);
  const throttled = parseThrottled(throttledPath ? await readText(throttledPath) : undefined);
  const warnings: ConclaveError[] = [];
  if (throttled && throttled.flags !== 0) {
    warnings.push(new ConclaveError('NODE-HEALTH-913', {
      detail: `${throttled.raw}: ${throttled.active.join(', ')}`,
      data: { throttled: throttled.raw, flags: throttled.active },
    }));
  }
  return {
    ...(Number.isFinite(milli) && tempText !== '' ? { temperatureC: Math.round(milli / 100) / 10 } : {}),
    ...(throttled ? { throttled: throttled.raw, throttledFlags: throttled.active } : {}),
    warnings,
  };
}

async function findHailoLink(root: string): Promise<PcieLink | undefined> {
  const dir = join(root, PCI_DEVICES_DIR);
  for (const address of await listDir(dir)) {
    const vendor = await readText(join(dir, address, 'vendor'));
    if (vendor?.toLowerCase() !== HAILO_PCI_VENDOR) continue;
    const [speed, width, maxSpeed] = await Promise.all([
      readText(join(dir, address, 'current_link_speed')),
      readText(join(dir, address, 'current_link_width')),
      readText(join(dir, address, 'max_link_speed')),
    ]);
    const widthNumber = width === undefined ? Number.NaN : Number.parseInt(width, 10);
    const gen = pcieGenOf(speed);
    const maxGen = pcieGenOf(maxSpeed);
    return {
      address,
      ...(gen !== undefined ? { gen } : {}),
      ...(Number.isInteger(widthNumber) && widthNumber > 0 ? { width: widthNumber } : {}),
      ...(speed ? { speed } : {}),
      ...(maxGen !== undefined ? { maxGen } : {}),
      ...(maxSpeed ? { maxSpeed } : {}),
    };
  }
  return undefined;
}

function absentReason(pcie: PcieLink | undefined, driverVersion: string | undefined): string {
  if (!pcie && !driverVersion) return `no ${HAILO_DEVICE_PATH}, no Hailo PCIe device and no hailo_pci driver`;
  if (!pcie) return `no ${HAILO_DEVICE_PATH} and no Hailo PCIe device (vendor ${HAILO_PCI_VENDOR})`;
  if (!driverVersion) return `no ${HAILO_DEVICE_PATH}: a Hailo PCIe device is at ${pcie.address} but the hailo_pci driver is not loaded`;
  return `no ${HAILO_DEVICE_PATH}`;
}

/**
 * What the board's files say about a Hailo chip: the device node, the driver, the PCIe link and
 * the board's health. Reads only files under `root`; a missing one is unknown, never an error.
 * The chip's architecture and firmware come from the sidecar, not from here.
 */
export async function detectHailo(options: DetectionOptions = {}): Promise<HailoDetection> {
  const root = options.root ?? '/';
  const [present, driverText, pcie, board] = await Promise.all([
    exists(join(root, HAILO_DEVICE_PATH)),
    readText(join(root, DRIVER_VERSION_FILE)),
    findHailoLink(root),
    readBoardHealth({ root }),
  ]);
  const driverVersion = driverText || undefined;
  const warnings: ConclaveError[] = [];
  if (pcie?.gen !== undefined && pcie.gen < MIN_PCIE_GEN) {
    const width = pcie.width === undefined ? '' : ` x${pcie.width}`;
    warnings.push(new ConclaveError('NODE-HEALTH-912', {
      detail: `Gen ${pcie.gen}${width} (${pcie.speed ?? 'speed unknown'}) at ${pcie.address}`,
      data: { gen: pcie.gen, width: pcie.width, speed: pcie.speed, maxGen: pcie.maxGen, address: pcie.address },
    }));
  }
  warnings.push(...board.warnings);
  return {
    present,
    devicePath: HAILO_DEVICE_PATH,
    ...(driverVersion ? { driverVersion } : {}),
    ...(pcie ? { pcie } : {}),
    ...board,
    warnings,
    ...(present ? {} : { reason: absentReason(pcie, driverVersion) }),
  };
}
