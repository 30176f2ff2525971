// Package e2e runs objbacker end to end under a real kernel client: a QEMU
// guest (software emulation, no KVM) attaches its exports with nbd-client
// and builds ZFS pools on them. The guest tests are in zfs_test.go and
// vdev_test.go; the guest's kernel and initramfs come from
// scripts/vm/prepare.sh. TestServe (serve_test.go) runs the host side of
// the harness, objbacker serve on the emulators, without the guest.
package e2e
