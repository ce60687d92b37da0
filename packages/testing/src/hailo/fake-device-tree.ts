import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export interface FakeDeviceTreeOptions {
  /** `5.0 GT/s PCIe` is Gen 2, `8.0 GT/s PCIe` Gen 3. @default '8.0 GT/s PCIe' */
  linkSpeed?: string;
  /** @default 1 */
  linkWidth?: number;
  /** hailo_pci's version. @default '4.20.0' */
  driverVersion?: string;
  /** SoC temperature in °C. @default 52.3 */
  temperatureC?: number;
  /** The firmware's throttled flags. @default '0x0' */
  throttled?: string;
  /** Leave out /dev/hailo0 (a board whose driver is not loaded). @default false */
  withoutDevice?: boolean;
}

/**
 * The files a Raspberry Pi 5 / CM5 with a Hailo-8 shows under / (as detection reads them), in
 * `root`: a fake tree for `--detection-root`. Regular files stand in for device nodes.
 */
export async function writeFakeDeviceTree(root: string, options: FakeDeviceTreeOptions = {}): Promise<void> {
  const pci = join(root, 'sys/bus/pci/devices/0001:01:00.0');
  const files: Record<string, string> = {
    [join(pci, 'vendor')]: '0x1e60',
    [join(pci, 'device')]: '0x2864',
    [join(pci, 'current_link_speed')]: options.linkSpeed ?? '8.0 GT/s PCIe',
    [join(pci, 'current_link_width')]: String(options.linkWidth ?? 1),
    [join(pci, 'max_link_speed')]: '8.0 GT/s PCIe',
    [join(root, 'sys/module/hailo_pci/version')]: options.driverVersion ?? '4.20.0',
    [join(root, 'sys/class/thermal/thermal_zone0/temp')]: String(Math.round((options.temperatureC ?? 52.3) * 1000)),
    [join(root, 'sys/devices/platform/soc/soc:firmware/get_throttled')]: options.throttled ?? '0x0',
  };
  if (!options.withoutDevice) files[join(root, 'dev/hailo0')] = '';
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, `${text}\n`);
  }
}
