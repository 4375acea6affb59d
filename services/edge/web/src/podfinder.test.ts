// The pod finder's rows, filter and the list of places where shells are allowed.

import { describe, expect, it } from 'vitest';

import type { ClusterInfo } from './api';
import { filterPods, podRows, shellTargets } from './podfinder';

const clusters: ClusterInfo[] = [
  {
    name: 'eu',
    default: true,
    namespaces: [
      {
        name: 'app-shop',
        pods: [
          { name: 'orders-7d4b9c', phase: 'Running', containers: [{ name: 'app', image: 'shop/orders:1.4', default: true }, { name: 'envoy', image: 'envoy:1.30' }] },
          { name: 'cart-55f1', phase: 'Pending', containers: [{ name: 'app', image: 'shop/cart:2.0' }] },
        ],
      },
      {
        name: 'staging',
        pods: [{ name: 'web-1', phase: 'Running', containers: [{ name: 'app', image: 'web:3', shell_allowed: true }] }],
      },
    ],
  },
  {
    name: 'us',
    namespaces: [{ name: 'staging', pods: [{ name: 'web-9', phase: 'Running', containers: [{ name: 'app', shell_allowed: true }] }] }],
  },
];

describe('pod finder', () => {
  const rows = podRows('eu', clusters[0].namespaces ?? []);

  it('lists every pod with its phase, images and shell containers', () => {
    expect(rows.map((r) => `${r.namespace}/${r.pod}`)).toEqual(['app-shop/orders-7d4b9c', 'app-shop/cart-55f1', 'staging/web-1']);
    expect(rows[0].images).toEqual(['shop/orders:1.4', 'envoy:1.30']);
    expect(rows[0].shellContainers).toEqual([]);
    expect(rows[2].shellContainers).toEqual(['app']);
    expect(rows[1].phase).toBe('Pending');
  });

  it('filters by every word over names, phase and images, in any case', () => {
    expect(filterPods(rows, '').length).toBe(3);
    expect(filterPods(rows, 'ORDERS').map((r) => r.pod)).toEqual(['orders-7d4b9c']);
    expect(filterPods(rows, 'envoy').map((r) => r.pod)).toEqual(['orders-7d4b9c']);
    expect(filterPods(rows, 'pending').map((r) => r.pod)).toEqual(['cart-55f1']);
    expect(filterPods(rows, 'app-shop running').map((r) => r.pod)).toEqual(['orders-7d4b9c']);
    expect(filterPods(rows, 'staging/web').map((r) => r.pod)).toEqual(['web-1']);
    expect(filterPods(rows, 'shell').map((r) => r.pod)).toEqual(['web-1']);
    expect(filterPods(rows, 'nothing-like-this')).toEqual([]);
  });

  it('says where shells are allowed, naming clusters when there are several', () => {
    expect(shellTargets(clusters)).toEqual(['staging/web-1/app (eu)', 'staging/web-9/app (us)']);
    expect(shellTargets([clusters[0]])).toEqual(['staging/web-1/app']);
    expect(shellTargets([{ name: 'x', reachable: false }])).toEqual([]);
  });
});
