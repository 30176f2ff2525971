// Package e2e runs objbacker end to end under a real kernel client: a QEMU
// guest (software emulation, no KVM) attaches its exports with nbd-client
// and builds ZFS pools on them. The tests are in zfs_test.go; the guest's
// kernel and initramfs come from scripts/vm/prepare.sh.
package e2e
