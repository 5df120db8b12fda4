#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: instance
short_description: A guest from a cloud image in one task, with cloud-init, port forwards and the guest agent
version_added: 0.1.0
description:
  - Makes a guest of an embedded root from an ordinary cloud image (a local file or an http(s) URL) without
    any domain XML, and brings it to a state. No libvirtd.
  - The image is verified against O(checksum) and cached once under the root (C(images/base/)), so the root
    stays self-contained. The guest's disk is a qcow2 overlay on it, C(images/<name>.qcow2), grown to
    O(disk_size) and never shrunk.
  - A NoCloud seed, C(images/<name>-cidata.img) (a FAT filesystem labelled C(CIDATA), made in Python on the
    managed host), carries O(cloud_init). cloud-init reads it on the guest's first boot only, unless its
    instance id (O(cloud_init.meta_data)) changes; the task warns when the seed of an existing guest changes.
  - The domain XML is built here and applied through the same steps as M(embedvirt.libvirt.domain), compared
    in libvirt's stored form, so a second run changes nothing. The serial console is logged to
    C(<root>/log/console/<name>.log).
  - With O(clone_from), the guest is a linked clone of another domain of the root (a template) instead; its
    disks are qcow2 overlays on the template's, which stays as it is while clones exist (see O(clone_from)).
options:
  name:
    description: Name of the guest (the domain).
    type: str
    required: true
  state:
    description:
      - V(running) makes everything and starts the guest; V(shutdown) and V(destroyed) make it and power it
        off gracefully or at once.
      - V(restarted) powers a running guest off gracefully (at once after O(shutdown_timeout)) and starts it in
        a new QEMU, so every change of its definition applies; the guest boots anew (a new boot id). A guest that
        is off is started. It changes something at every run.
      - V(undefined) removes the domain, its disk overlay, its seed and its NVRAM (a guest's data, with no
        undo). The cached base image stays unless O(remove_image=true). A linked clone's further overlays go too,
        never its source's disks. The source of linked clones is refused (its disks are what theirs are built on).
      - With V(undefined), a file named after the instance (V(images/<name>.qcow2), V(images/<name>-cidata.img))
        that another domain uses as a disk is kept, with a warning naming that domain. One no other domain uses is
        removed also when no domain of that name exists, so a clean-up after a create that failed half way removes
        its leftovers. The NVRAM goes only with the domain that names it (libvirt makes it on a first start).
    type: str
    choices: [running, shutdown, destroyed, restarted, undefined]
    default: running
  image:
    description:
      - The cloud image (qcow2 or raw), a path on the managed host or an V(http://) or V(https://) URL.
        Required to make a guest, unless O(clone_from) is given.
      - Left out (with O(clone_from)) for a guest that exists, the task acts on that guest as it is, as
        M(embedvirt.libvirt.domain) does; see the notes.
      - A local path is opened as the owner of the root (also when the task runs as root), so it must be a regular
        file that user may read.
      - A download that is interrupted is resumed by the next run (HTTP range request). Until its checksum
        matched, a download or copy is a file of the task's user that the root's owner cannot read.
    type: str
  checksum:
    description:
      - The image's digest as V(<algorithm>:<hex>) with algorithm V(sha256), V(sha384) or V(sha512). A download
        (or copy) that does not match is removed and the task fails. Required for a URL unless
        O(allow_unverified=true).
      - Or V(<algorithm>:<URL>) of a checksums file, such as the C(SHA512SUMS) Debian publishes next to its cloud
        images - lines C(<hex>  <file name>) as C(sha512sum) writes them; the line naming the image's file name
        gives the digest. It is read at every run (at most 1 MiB, within 60 s), as the cached image's name
        depends on it.
    type: str
  clone_from:
    description:
      - Make the guest a linked clone of this domain of the root (the source, a template) instead of a guest
        from O(image). The source must be shut off and not autostart.
      - The clone's disk C(images/<name>.qcow2) is a qcow2 overlay on the source's first writable disk (grown to
        O(disk_size) when given); each further writable disk of the source gets an overlay
        C(images/<name>-<target>.qcow2), attached in the same order from C(vdc) on. CD-ROMs, read-only disks
        and the source's cloud-init seed are not cloned. The source's disks must be files below the root's
        C(images/) directory, qcow2 or raw, not encrypted.
      - Everything else comes from this task's options, as for any instance, so the clone has its own seed
        (cloud-init sees a new instance id, O(name), and runs again), its own MAC (from O(name)), its own port
        forwards, and a new uuid. O(firmware) is not taken from the source either.
      - While clones of it exist, the source cannot be started, marked O(autostart), snapshotted or reverted
        to a snapshot, or removed with O(state=undefined) (error_kind V(clone_source)), which would change or
        remove what their disks are built on; an autostart mark it got otherwise is removed when the root's
        drivers open. Remove the clones first.
    type: str
  allow_unverified:
    description: Use a URL without O(checksum).
    type: bool
    default: false
  remove_image:
    description:
      - With O(state=undefined), also remove the cached base image of O(image).
      - It is kept, with a warning naming them, while other files in C(images/) (other instances' disks,
        templates) are built on it.
    type: bool
    default: false
  remove_snapshots:
    description:
      - With O(state=undefined), delete the guest's snapshots first; libvirt refuses to remove a domain that has
        any.
    type: bool
    default: false
  download_timeout:
    description: Seconds a download (or copy) may take in all; what came is kept for the next run.
    type: int
    default: 1800
  disk_size:
    description:
      - Virtual size of the guest's disk, such as V(10G); the image's own size when left out. A larger size
        grows the overlay (the guest grows its filesystem, as cloud images do at boot); a smaller one is refused.
    type: str
  memory:
    description:
      - Memory in MiB.
      - V(1024) for a new guest when left out; an existing guest keeps its own, as with each option that
        shapes the definition (see the notes).
    type: int
  max_memory:
    description:
      - The most memory in MiB the guest may be given while it runs (libvirt's C(<memory>)); O(memory) is what
        it has (C(<currentMemory>)), and a running guest's memory changes at once within this maximum, through
        its balloon driver. For a new guest as much as O(memory) when left out (no change while it runs); an
        existing guest keeps its own.
    type: int
  vcpus:
    description:
      - Virtual CPUs; V(1) for a new guest when left out. A running guest gets more at once (CPU hotplug) within
        O(max_vcpus); fewer wait for its next start (the vCPUs it booted with do not unplug).
    type: int
  max_vcpus:
    description: The most virtual CPUs the guest may have while it runs; as many as O(vcpus) when left out.
    type: int
  disks:
    description:
      - Data disks besides the guest's own disk (C(vda)) and seed (C(vdb)), attached in this order.
      - Each keeps its target (C(vdc), C(vdd), ... on virtio; C(sda), ... on scsi and sata) while it stays in the list,
        whatever is added or removed around it.
      - A disk added to a running guest on virtio or scsi is hot-plugged and one removed is hot-unplugged (the guest
        must let go of it); sata waits for the next start (RV(pending_restart)). The definition has 14 PCIe root
        ports, of which a guest's own devices take about six, so about eight virtio disks (or a scsi controller) can be
        hot-plugged into a running guest, and libvirt refuses more; add those while it is shut off.
      - A larger O(disks[].size) grows the image, through the guest's QEMU while it runs, so the guest sees the new
        size at once; a smaller one is refused.
      - A disk removed from the list keeps its file unless O(remove_disks=true).
      - None for a new guest when left out; an existing guest keeps its own.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - The disk's name; its file is C(images/<instance name>-disk-<name>.qcow2) (or C(.img) when raw).
            1 to 64 letters, digits, C(_), C(.) and C(-).
        type: str
        required: true
      size:
        description: Its virtual size, such as V(10G). Required unless O(disks[].file) or O(disks[].backing_file).
        type: str
      format:
        description: V(qcow2) or V(raw).
        type: str
        choices: [qcow2, raw]
        default: qcow2
      bus:
        description:
          - V(virtio), V(scsi) (a virtio-scsi controller) or V(sata) (AHCI, which QEMU cannot hot-plug, and which
            some kernels lack, such as Debian's cloud flavour).
        type: str
        choices: [virtio, scsi, sata]
        default: virtio
      file:
        description:
          - An existing image below the root's C(images/) directory (a path relative to it) to attach instead of
            one named after the disk. It is never removed by this module.
        type: str
      backing_file:
        description:
          - An image below the root's C(images/) directory (a path relative to it) that the disk, a qcow2 overlay,
            is built on.
        type: str
  remove_disks:
    description:
      - Remove the files of data disks that O(disks) no longer lists (and with O(state=undefined), of all of them);
        not the files O(disks[].file) gave. A file a running guest still has open is kept, with a warning.
    type: bool
    default: false
  apply:
    description:
      - What to do with a change of a running guest that cannot apply at once (RV(pending_restart)).
      - V(live) leaves it in the stored definition for the guest's next start, with a warning.
      - V(restart) restarts the guest for it, as O(state=restarted) does. A guest is never restarted unless asked.
    type: str
    choices: [live, restart]
    default: live
  firmware:
    description:
      - V(bios) (SeaBIOS) or V(uefi) (OVMF; Debian's C(ovmf) package). With V(uefi) libvirt keeps the guest's
        NVRAM under the root (C(lib/qemu/nvram/)).
      - V(bios) for a new guest when left out.
    type: str
    choices: [bios, uefi]
  secure_boot:
    description:
      - With O(firmware=uefi), boot with UEFI Secure Boot on, through OVMF's Secure Boot build with Microsoft's keys
        enrolled (Debian's C(OVMF_CODE_4M.secboot.fd) and C(OVMF_VARS_4M.ms.fd), as libvirt chooses them), and
        SMM. The guest must boot a signed chain, such as Debian's C(shim-signed), C(grub-efi-amd64-signed) and
        its kernel, as Debian's and most distributions' cloud images do.
      - Refused (C(error_kind=secure_boot)) without O(firmware=uefi).
      - V(false) for a new guest when left out.
    type: bool
  tpm:
    description:
      - An emulated TPM 2.0 (C(tpm-crb), run by swtpm). Its state lives under the root
        (C(lib/swtpm/<uuid>/)), so archives of the root (M(embedvirt.libvirt.root_dir)) carry it; undefining
        the instance removes it with the disk, undefining the domain with M(embedvirt.libvirt.domain) keeps it.
      - Only where QEMU runs as the helper's own user, as passt is (see RV(network_backend)), that is in a root of an
        ordinary user, or in a root of root's whose qemu.conf runs QEMU as root. libvirt kills, as the helper's user, the
        process that swtpm's pidfile names, in a directory that a QEMU with an account of its own writes, so
        such roots (the default for roots of root's) are refused (C(error_kind=tpm)), and so is a hypervisor
        without swtpm (packages C(swtpm) and C(swtpm-tools), which the host role installs).
      - In a root of an ordinary user libvirt makes swtpm's local certificate authority under that user's
        C(~/.config/); in a root of root's, C(/var/lib/swtpm-localca).
      - V(false) for a new guest when left out.
    type: bool
  accelerator:
    description:
      - V(kvm), V(tcg) (emulation, slow but works anywhere), or V(auto).
      - V(auto) chooses KVM for a new guest when the root's QEMU may open C(/dev/kvm), else TCG. When QEMU then
        fails to start the guest under KVM (a nested host whose KVM cannot give it the host's CPU, such as
        C(failed to set MSR)), the guest is defined and started under TCG, with a warning that names the error.
        An existing guest keeps what it runs under; give V(kvm) to move it to KVM.
      - V(kvm) fails the task when QEMU cannot start the guest under KVM.
      - V(auto) for a new guest when left out.
    type: str
    choices: [auto, kvm, tcg]
  cloud_init:
    description:
      - What the seed gives cloud-init. Dicts are written as YAML that cloud-init reads back with exactly the
        given keys, values and types (a string V(yes) or V(017) stays a string).
      - Left out, an existing guest's seed stays as it is; a new guest gets a seed with the defaults below.
      - A value YAML cannot carry exactly (a string with a lone surrogate, lists and dicts nested more than 100
        levels deep, an integer of more than 4300 digits) fails the task with C(error_kind=cloud_init), naming
        its path.
    type: dict
    suboptions:
      user_data:
        description:
          - A dict (written as C(#cloud-config)) or text (as given, C(#cloud-config ...) or a script starting
            with C(#!)).
        type: raw
      meta_data:
        description: Meta data; C(instance-id) defaults to O(name), C(local-hostname) to O(cloud_init.hostname) or O(name).
        type: dict
      network_config:
        description: A network configuration (version 1 or 2) as a dict or text; cloud-init's default (DHCP on the first NIC) when left out.
        type: raw
      hostname:
        description:
          - The guest's host name, merged into a dict O(cloud_init.user_data); with text user data it goes to the
            meta data (C(local-hostname)).
        type: str
      ssh_authorized_keys:
        description:
          - Public keys for the image's default user, merged into a dict O(cloud_init.user_data); with text user
            data they go to the meta data (C(public-keys)).
        type: list
        elements: str
  network:
    description:
      - The guest's network card, when it has one; see O(networks) for several. libvirt networks do not exist in
        embedded mode.
      - "V({type: user}) for a new guest when neither O(network) nor O(networks) is given."
    type: dict
    suboptions:
      type:
        description:
          - V(user) (user-mode networking, unprivileged, with O(network.port_forwards)), V(bridge) (an existing
            host bridge), V(tap) (an existing tap device), or V(none).
        type: str
        choices: [none, user, bridge, tap]
        default: user
      port_forwards:
        description: With V(user), host ports forwarded to the guest.
        type: list
        elements: dict
        default: []
        suboptions:
          host:
            description: Port on the host.
            type: int
            required: true
          guest:
            description: Port in the guest.
            type: int
            required: true
          protocol:
            description: V(tcp) or V(udp).
            type: str
            choices: [tcp, udp]
            default: tcp
          address:
            description:
              - Host address the port is bound to - V(0.0.0.0) for every IPv4 one.
              - An IPv6 address (V(::1)) needs the passt backend (see RV(network_backend)); QEMU's slirp
                forwards IPv4 only. For IPv4 and IPv6, give the port twice, once with each address.
            type: str
            default: 127.0.0.1
      bridge:
        description: With V(bridge), the host bridge.
        type: str
      tap:
        description: With V(tap), the tap device.
        type: str
      mac:
        description: The MAC address; one derived from O(name) when left out, so it stays the same.
        type: str
  networks:
    description:
      - The guest's network cards, in order (the guest names them so), each as O(network) describes one; at most
        8. Each card without O(networks[].mac) gets its own MAC from O(name) and its place in the list, so it
        keeps it. Give either O(network) or O(networks).
      - A card added to or removed from the end of the list of a running guest is plugged or unplugged at once when
        libvirt knows it - V(bridge), V(tap), or V(user) with the passt backend (RV(network_backend)). When a
        user-mode card on slirp (on QEMU's command line) changes, or a card changes in place (one taken out or put in
        before others moves their MACs), every card waits for the guest's next start (RV(pending_restart)).
    type: list
    elements: dict
    suboptions:
      type:
        description: As O(network.type).
        type: str
        choices: [none, user, bridge, tap]
        default: user
      port_forwards:
        description: As O(network.port_forwards).
        type: list
        elements: dict
        default: []
        suboptions:
          host:
            description: Port on the host.
            type: int
            required: true
          guest:
            description: Port in the guest.
            type: int
            required: true
          protocol:
            description: V(tcp) or V(udp).
            type: str
            choices: [tcp, udp]
            default: tcp
          address:
            description: As O(network.port_forwards[].address).
            type: str
            default: 127.0.0.1
      bridge:
        description: As O(network.bridge).
        type: str
      tap:
        description: As O(network.tap).
        type: str
      mac:
        description: As O(network.mac).
        type: str
  agent:
    description:
      - Give the guest a guest agent channel (C(org.qemu.guest_agent.0)), for the addresses of
        M(embedvirt.libvirt.domain_info) and the C(embedvirt.libvirt.guest_agent) connection.
      - V(true) for a new guest when left out.
    type: bool
  extra_devices:
    description:
      - Device XML elements (C(<disk>), C(<hostdev>), ...) added to the domain's C(<devices>) as they are.
      - None for a new guest when left out; V([]) removes those an existing guest has.
    type: list
    elements: str
  autostart:
    description: Whether the guest starts when the root's drivers open (the root role's boot service).
    type: bool
  wait_for:
    description:
      - With O(state=running), wait until the guest agent answers (V(agent)), or until an SSH server answers through
        the forward of guest port 22 (V(ssh)), at most O(wait_timeout) seconds.
    type: str
    choices: [none, agent, ssh]
    default: none
  wait_timeout:
    description: Seconds O(wait_for) may take.
    type: int
    default: 300
  shutdown_timeout:
    description: Seconds a graceful power-off may take (O(state=shutdown) or O(state=undefined)).
    type: int
    default: 120
  force:
    description: With O(state=shutdown), power off at once when the guest did not within O(shutdown_timeout).
    type: bool
    default: false
extends_documentation_fragment:
  - embedvirt.libvirt.root
  - embedvirt.libvirt.attributes
  - embedvirt.libvirt.attributes.actiongroup_libvirt
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the domain's state, autostart and stored definition before and after.
  idempotent:
    support: full
notes:
  - Options left out never reset an existing guest to the module's defaults. The definition records in its
    C(<metadata>) the values of O(memory), O(max_memory), O(vcpus), O(max_vcpus), O(firmware), O(secure_boot), O(tpm),
    O(accelerator),
    O(agent), O(network) or O(networks), O(extra_devices) and O(disks) it was built from, and a task that leaves one
    out keeps the recorded value.
  - "Changes to a running guest: each is made in the stored definition always, and at once where it can be:
    O(memory) within O(max_memory), more O(vcpus) within O(max_vcpus), O(disks) on virtio and scsi, a larger disk.
    The others (O(firmware), O(secure_boot), O(tpm), O(accelerator), O(agent), the cards, O(extra_devices), the maxima, sata disks) are
    listed in RV(pending_restart) and apply at the guest's next start, or now with O(apply=restart). Each is
    measured against what the guest runs with, so what waits is listed again by every run until the guest
    restarts."
  - A task that names a guest that exists without O(image) or O(clone_from) (such as O(name) and
    O(state=shutdown)) changes only what it gives. Without any option that shapes the definition it does not
    touch the definition at all, so it works on any domain of the root; with such options it needs the record
    above (error_kind V(not_instance) for a domain another module defined). O(disk_size) grows the guest's
    disk, O(cloud_init) rewrites its seed.
  - Guests' disks are named after the guest (C(images/<name>.qcow2)); a file of that name that is not such an
    overlay is refused, never replaced.
  - A clone of a template that has booted shares what the template's first boot wrote that cloud-init does not
    renew per instance, such as C(/etc/machine-id) (which systemd-networkd's DHCP client id comes from). With
    O(network.type=bridge), clear it in the template before shutting it down (C(cloud-init clean --machine-id)
    or an empty C(/etc/machine-id)).
seealso:
  - module: embedvirt.libvirt.domain
  - module: embedvirt.libvirt.domain_info
  - module: embedvirt.libvirt.volume
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: A Debian guest from its cloud image, reachable over SSH and through its guest agent
  embedvirt.libvirt.instance:
    root: /srv/vms
    name: web
    image: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
    checksum: sha512:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS
    disk_size: 10G
    memory: 1024
    cloud_init:
      hostname: web
      ssh_authorized_keys:
        - "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"
      user_data:
        packages: [nginx]
    network:
      type: user
      port_forwards:
        - {host: 2222, guest: 22}
    wait_for: ssh

- name: A template, booted once until its agent answers (cloud-init ran), then shut down
  embedvirt.libvirt.instance:
    root: /srv/vms
    name: tmpl
    image: /srv/images/debian-12-genericcloud-amd64.qcow2
    checksum: sha512:<from SHA512SUMS>
    state: "{{ item }}"
    wait_for: agent
  loop: [running, shutdown]

- name: Five linked clones of it, each with its own host name, MAC, seed and SSH port
  embedvirt.libvirt.instance:
    root: /srv/vms
    name: web{{ item }}
    clone_from: tmpl
    memory: 512
    network:
      port_forwards:
        - {host: "{{ 2230 + item }}", guest: 22}
  loop: [1, 2, 3, 4, 5]

- name: More memory and a second vCPU for web while it runs, and two data disks hot-plugged
  embedvirt.libvirt.instance:
    root: /srv/vms
    name: web
    memory: 2048
    max_memory: 4096
    vcpus: 2
    max_vcpus: 4
    disks:
      - {name: data, size: 20G}
      - {name: scratch, size: 5G, bus: scsi}
    apply: restart  # max_memory and max_vcpus wait for a start: restart web for them now
  register: web

- name: A guest with two cards, SSH forwarded on the first (over IPv6 too with passt), the second on a host bridge
  embedvirt.libvirt.instance:
    root: /srv/vms
    name: db
    image: /srv/images/debian-12-genericcloud-amd64.qcow2
    checksum: sha512:<from SHA512SUMS>
    networks:
      - type: user
        port_forwards:
          - {host: 2223, guest: 22}
          - {host: 2223, guest: 22, address: '::1'}  # passt only: libvirt 10 or later, package passt
      - type: bridge
        bridge: br0
    cloud_init:
      network_config:
        version: 2
        ethernets:
          all:
            match: {name: "en*"}
            dhcp4: true
  register: db

- name: Which user networking db got, and why
  ansible.builtin.debug:
    msg: "{{ db.network_backend.name }}: {{ db.network_backend.reason }}"

- name: A guest with Secure Boot and a TPM 2.0, in a root of the user who runs the task
  embedvirt.libvirt.instance:
    root: ~/vms
    name: secure
    image: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
    checksum: sha512:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS
    firmware: uefi
    secure_boot: true
    tpm: true
    wait_for: agent

- name: Reboot web (a new QEMU, so every change applies)
  embedvirt.libvirt.instance:
    root: /srv/vms
    name: web
    state: restarted
    wait_for: agent

- name: Gone, with its disk and seed (the cached image stays)
  embedvirt.libvirt.instance:
    root: /srv/vms
    name: web
    state: undefined
'''

RETURN = r'''
domain:
  description: The domain after the task (predicted in check mode), as M(embedvirt.libvirt.domain) returns it; null once undefined.
  returned: always
  type: dict
  sample: {name: web, state: running, autostart: false, persistent: true, id: 1, uuid: 9b0c..., xml: <domain ...>}
xml:
  description: The stored domain definition.
  returned: unless O(state=undefined)
  type: str
disk:
  description: The guest's disk (a qcow2 overlay on the cached base image).
  returned: always
  type: str
  sample: /srv/vms/images/web.qcow2
seed:
  description: The cloud-init seed.
  returned: always
  type: str
  sample: /srv/vms/images/web-cidata.img
console_log:
  description: The serial console's log.
  returned: always
  type: str
  sample: /srv/vms/log/console/web.log
forwarded_ports:
  description: The host ports forwarded to the guest.
  returned: unless O(state=undefined)
  type: list
  elements: dict
  sample: [{host: 2222, guest: 22, protocol: tcp, address: 127.0.0.1}]
network_backend:
  description:
    - The backend of the guest's user-mode cards, and why - V(passt) (libvirt's own, IPv4 and IPv6 forwards) where
      libvirt 10 or later runs it, the hypervisor has the C(passt) program and the root's QEMU runs as the helper's
      own user, else V(slirp) (QEMU's, IPv4 only). A root of root's whose QEMU has an account of its own (the
      default) keeps slirp - libvirt kills, as root, the process that passt's pidfile names, and that account writes
      it.
    - A guest keeps the backend it was defined with.
  returned: when the guest has a user-mode card
  type: dict
  contains:
    name:
      description: V(passt) or V(slirp).
      type: str
    reason:
      description: Why.
      type: str
  sample: {name: passt, reason: libvirt 11.3.0 runs /usr/bin/passt}
interfaces:
  description:
    - The guest's interfaces and addresses as its guest agent reports them; empty unless O(wait_for=agent).
    - Checked as M(embedvirt.libvirt.domain_info) checks them (RV(embedvirt.libvirt.domain_info#module:domains[].interfaces)),
      so only addresses that can be the guest's, never one of the hypervisor's.
  returned: unless O(state=undefined)
  type: list
  elements: dict
  sample: [{name: eth0, hwaddr: '52:54:00:12:34:56', addresses: [{type: ipv4, address: 10.0.2.15, prefix: 24}]}]
pending_restart:
  description:
    - What of the task's change of a running guest waits for the guest's next start - option names, and
      C(disks:<name>) per data disk - when O(apply=live); empty when everything applied at once.
  returned: always
  type: list
  elements: str
  sample: [max_memory, networks]
actions:
  description: What the task did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [download https://..., create /srv/vms/images/web.qcow2, write seed /srv/vms/images/web-cidata.img, define, start]
'''

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils._instance import (
    ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE, InstanceManager)


def main():
    module = EmbedvirtModule(
        ARGUMENT_SPEC,
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    module.exit(**InstanceManager(module).run())


if __name__ == '__main__':
    main()
