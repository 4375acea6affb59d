// The pod finder: every pod of a cluster in one filterable list, with its phase, its images and
// whether a shell is allowed in one of its containers. Pure functions, unit-tested; main.ts
// draws the dialog.

import type { ClusterInfo, Namespace } from './api';

export interface PodRow {
  cluster: string;
  namespace: string;
  pod: string;
  phase: string;
  images: string[];
  // The containers where policy allows a shell.
  shellContainers: string[];
}

// At most this many rows are drawn; the count says how many matched.
export const kMaxPodRows = 200;

export function podRows(cluster: string, namespaces: Namespace[]): PodRow[] {
  const rows: PodRow[] = [];
  for (const ns of namespaces) {
    for (const pod of ns.pods) {
      rows.push({
        cluster,
        namespace: ns.name,
        pod: pod.name,
        phase: pod.phase ?? '',
        images: [...new Set(pod.containers.map((c) => c.image ?? '').filter((i) => i !== ''))],
        shellContainers: pod.containers.filter((c) => c.shell_allowed).map((c) => c.name),
      });
    }
  }
  return rows;
}

// The rows whose namespace, pod name, phase or images hold every word of `filter` (any case);
// `shell` as a word also matches a pod that allows a shell.
export function filterPods(rows: PodRow[], filter: string): PodRow[] {
  const words = filter.toLowerCase().split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) return rows;
  return rows.filter((r) => {
    const text = `${r.namespace}/${r.pod} ${r.phase} ${r.images.join(' ')}`.toLowerCase();
    return words.every((w) => text.includes(w) || (w === 'shell' && r.shellContainers.length > 0));
  });
}

// Where shells are allowed across the reachable clusters, as "namespace/pod/container" (with
// the cluster when there are several), for the disabled Shell button's explanation.
export function shellTargets(clusters: ClusterInfo[]): string[] {
  const several = clusters.length > 1;
  const out: string[] = [];
  for (const c of clusters) {
    for (const ns of c.namespaces ?? []) {
      for (const pod of ns.pods) {
        for (const container of pod.containers) {
          if (container.shell_allowed) {
            out.push(`${ns.name}/${pod.name}/${container.name}${several ? ` (${c.name})` : ''}`);
          }
        }
      }
    }
  }
  return out;
}
