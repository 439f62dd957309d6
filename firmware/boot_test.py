"""Boot test of the firmware image (`make firmware-test`): two boots of a copy under qemu.

Boot 1 (first boot): provisioning prints the certificate fingerprint on the serial console;
from the host, through forwarded ports, wait for gRPC health SERVING (timed from power-on),
check that the certificate the server presents is the one the console printed (pinning) and
that the gRPC channel verifies against it, that a call without the token is refused, and
scrape /metrics over HTTPS (the room's microphone, qemu's virtual HDA card, must be up).
ACPI power-off. Between boots the token is read from the state partition with debugfs
(no mount), and the key, certificate and token files are checked: mode 0600, owned by the
service user. Boot 2: SERVING again, the same certificate (not regenerated), and with the
token: Sessions.List shows the room running and Subscribe streams its events.

Usage: python firmware/boot_test.py [--image firmware/build/appliance.raw] [--accel auto|kvm|tcg]
Writes firmware/build/boot-test/ (console logs, result.json); exit status 1 on any failure.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from appliance._generated.appliance.v1 import appliance_pb2 as pb
from appliance._generated.appliance.v1 import appliance_pb2_grpc as pb_grpc
from appliance.service.client import Endpoint, free_port, health_status

HERE = Path(__file__).resolve().parent
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
GRPC_PORT, METRICS_PORT = 50051, 9464  # in the guest (firmware/image_config.py)
SERVER_NAME = "appliance"  # the image's hostname: a name in the provisioned certificate
# -arch-capabilities: some KVM hosts refuse that MSR (0x10a) and qemu aborts.
QEMU_KVM = ["-accel", "kvm", "-cpu", "host,-arch-capabilities"]
QEMU_TCG = ["-accel", "tcg", "-cpu", "max"]  # max: AVX2/FMA (qemu >= 7.2) for onnxruntime and CTranslate2
FINGERPRINT_LINE = re.compile(r"appliance: TLS certificate SHA-256 fingerprint ([0-9A-F:]{95})( \(generated)?")


class BootTestError(RuntimeError):
    pass


# --- pure helpers ---

def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as openssl prints it (AB:CD:...)."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def console_fingerprints(console: str) -> list[tuple[str, bool]]:
    """(fingerprint, generated this boot) for each provisioning line on the console."""
    return [(m.group(1), m.group(2) is not None) for m in FINGERPRINT_LINE.finditer(console)]


def debugfs_stat(text: str) -> tuple[int, int, int]:
    """(permission bits, uid, gid) from `debugfs -R 'stat PATH'`."""
    mode = re.search(r"Mode:\s+(\d+)", text)
    owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", text)
    if not mode or not owner:
        raise BootTestError(f"unexpected debugfs output: {text[:200]!r}")
    return int(mode.group(1), 8) & 0o7777, int(owner.group(1)), int(owner.group(2))


# --- the machine ---

def kvm_boots(disk: Path, workdir: Path, timeout: float = 20.0) -> bool:
    """Whether KVM runs this image's kernel far enough to print its banner.

    An answering /dev/kvm is not enough: a PVM host (kernel module kvm_pvm, as on the machines
    this was written on) serves KVM's API but runs only PVM-aware guest kernels; OVMF fails
    there with "KVM internal error" and Debian's kernel hangs before its first line.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    kernel, log = workdir / "vmlinuz", workdir / "kvm-probe.log"
    esp = partition(disk, "ESP")
    subprocess.run(["mcopy", "-o", "-i", f"{disk}@@{esp}", "::/appliance/vmlinuz", str(kernel)], check=True)
    probe = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "q35", *QEMU_KVM, "-m", "512", "-kernel", str(kernel),
         "-append", "console=ttyS0 panic=-1", "-display", "none", "-monitor", "none",
         "-serial", f"file:{log}", "-no-reboot"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and probe.poll() is None:
            if log.exists() and "Linux version" in log.read_text(errors="replace"):
                return True
            time.sleep(0.5)
        return False
    finally:
        probe.kill()
        probe.wait()
        kernel.unlink(missing_ok=True)


@dataclass
class Guest:
    """One qemu run of the disk: UEFI (OVMF), virtio disk and net, an HDA card on a null audio backend."""

    disk: Path
    vars: Path
    workdir: Path
    accel: str
    boot: int
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)

    @property
    def console_log(self) -> Path:
        return self.workdir / f"console-{self.boot}.log"

    @property
    def qmp_path(self) -> Path:
        return self.workdir / f"qmp-{self.boot}.sock"

    def start(self) -> None:
        cpu = QEMU_KVM if self.accel == "kvm" else QEMU_TCG
        forwards = f"hostfwd=tcp:127.0.0.1:{self.grpc_port}-:{GRPC_PORT},hostfwd=tcp:127.0.0.1:{self.metrics_port}-:{METRICS_PORT}"
        command = [
            "qemu-system-x86_64", "-machine", "q35", *cpu, "-smp", "2", "-m", "2048",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={self.vars}",
            "-drive", f"if=virtio,format=raw,file={self.disk}",
            "-netdev", f"user,id=net0,{forwards}", "-device", "virtio-net-pci,netdev=net0",
            "-audiodev", "none,id=snd0", "-device", "intel-hda", "-device", "hda-duplex,audiodev=snd0",
            "-display", "none", "-serial", f"file:{self.console_log}",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off", "-no-reboot",
        ]
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)

    def console(self) -> str:
        return self.console_log.read_text(errors="replace") if self.console_log.exists() else ""

    def check_running(self) -> None:
        if self.process.poll() is not None:
            output = self.process.stdout.read().decode(errors="replace")
            raise BootTestError(f"qemu exited with {self.process.returncode}: {output.strip()[-500:]}")

    def power_off(self, timeout: float = 90.0) -> float:
        """ACPI power button (QMP system_powerdown); seconds until qemu exits."""
        start = time.monotonic()
        with socket.socket(socket.AF_UNIX) as qmp:
            qmp.connect(str(self.qmp_path))
            reader = qmp.makefile("r")
            reader.readline()  # greeting
            for command in ("qmp_capabilities", "system_powerdown"):
                qmp.sendall(json.dumps({"execute": command}).encode() + b"\n")
                while "return" not in (reply := json.loads(reader.readline())):
                    if "error" in reply:
                        raise BootTestError(f"QMP {command}: {reply['error']}")
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BootTestError(f"the guest did not power off within {timeout:.0f} s of system_powerdown") from None
        return time.monotonic() - start

    def screendump(self, path: Path) -> None:
        """The guest's screen (tty0, where systemd reports failed units) as a PPM file."""
        with socket.socket(socket.AF_UNIX) as qmp:
            qmp.settimeout(10)
            qmp.connect(str(self.qmp_path))
            reader = qmp.makefile("r")
            reader.readline()
            for command in ({"execute": "qmp_capabilities"},
                            {"execute": "screendump", "arguments": {"filename": str(path)}}):
                qmp.sendall(json.dumps(command).encode() + b"\n")
                while "return" not in (reply := json.loads(reader.readline())) and "error" not in reply:
                    pass

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- checks from the host ---

def wait_serving(guest: Guest, timeout: float) -> tuple[float, bytes]:
    """Seconds from power-on to health SERVING over TLS, and the certificate presented (PEM)."""
    deadline = guest.started + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        guest.check_running()
        try:
            pem = ssl.get_server_certificate(("127.0.0.1", guest.grpc_port), timeout=3).encode()
            status = asyncio.run(_health(guest.grpc_port, pem))
            if status == "SERVING":
                return time.monotonic() - guest.started, pem
            last_error = f"health {status}"
        except (OSError, ssl.SSLError, grpc.aio.AioRpcError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"[:200]
        time.sleep(0.5)
    raise BootTestError(f"no health SERVING within {timeout:.0f} s of power-on ({last_error})")


async def _health(port: int, pem: bytes) -> str:
    """grpc.health.v1 Check on a channel that trusts only `pem` and checks the name in it."""
    credentials = grpc.ssl_channel_credentials(pem)
    options = [("grpc.ssl_target_name_override", SERVER_NAME)]
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        return await health_status(channel, timeout=5)


def pinned_fingerprint(guest: Guest, pem: bytes, timeout: float = 10.0) -> tuple[str, bool]:
    """The fingerprint the console printed this boot, which must match the certificate presented.

    Provisioning prints it once, and the login banner repeats it: every line must agree.
    """
    presented = fingerprint(ssl.PEM_cert_to_DER_cert(pem.decode()))
    deadline = time.monotonic() + timeout
    while not (lines := console_fingerprints(guest.console())) and time.monotonic() < deadline:
        time.sleep(0.5)
    printed = {value for value, _ in lines}
    if printed != {presented}:
        raise BootTestError(f"the server presents {presented}, the console printed {sorted(printed) or 'none'}")
    return presented, any(generated for _, generated in lines)


def scrape_metrics(guest: Guest, pem: bytes, timeout: float = 30.0) -> str:
    """/metrics over HTTPS trusting only the pinned certificate, once the room's source is up."""
    context = ssl.create_default_context(cadata=pem.decode())  # checks the name: IP 127.0.0.1 is in it
    deadline = time.monotonic() + timeout
    while True:
        connection = http.client.HTTPSConnection("127.0.0.1", guest.metrics_port, context=context, timeout=10)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            body = response.read().decode()
        finally:
            connection.close()
        if response.status != 200:
            raise BootTestError(f"/metrics answered HTTP {response.status}")
        if re.search(r'^appliance_source_up\{session="room"\} 1\.0$', body, re.MULTILINE):
            return body
        if time.monotonic() > deadline:
            up = re.findall(r"^appliance_source_up.*$", body, re.MULTILINE)
            raise BootTestError(f"the room's microphone is not up after {timeout:.0f} s: {up}")
        time.sleep(1)


async def refused_without_token(guest: Guest, pem_file: Path) -> None:
    endpoint = Endpoint(f"127.0.0.1:{guest.grpc_port}", ca=pem_file, server_name=SERVER_NAME)
    async with endpoint.channel() as channel:
        try:
            await pb_grpc.SessionsStub(channel).List(pb.ListSessionsRequest(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return
            raise BootTestError(f"a call without the token failed with {exc.code().name}, not UNAUTHENTICATED")
    raise BootTestError("a call without the token was answered")


async def room_with_token(guest: Guest, pem_file: Path, token_file: Path) -> dict:
    """Sessions.List, then Subscribe to the room: its first event arrives (its state, retained)."""
    endpoint = Endpoint(f"127.0.0.1:{guest.grpc_port}", ca=pem_file, token_file=token_file, server_name=SERVER_NAME)
    async with endpoint.channel() as channel:
        listed = await pb_grpc.SessionsStub(channel).List(pb.ListSessionsRequest(), metadata=endpoint.metadata(),
                                                          timeout=10)
        rooms = {s.session_id: pb.SessionState.Name(s.state) for s in listed.sessions}
        if rooms.get("room") != "RUNNING":
            raise BootTestError(f"expected the room RUNNING, sessions: {rooms}")
        call = pb_grpc.SubtitlesStub(channel).Subscribe(
            pb.SubscribeRequest(session_id="room", include_partials=True), metadata=endpoint.metadata())
        event = await asyncio.wait_for(call.read(), 15)
        call.cancel()
    if event is grpc.aio.EOF or event.kind != pb.SubtitleEvent.SESSION_STATE:
        raise BootTestError(f"the room's first event is not its state: {event}")
    return {"sessions": rooms, "first_event": {"seq": event.seq, "state": pb.SessionState.Name(event.state)}}


# --- the state partition, read without mounting ---

def partition(disk: Path, name: str) -> int:
    """Byte offset of the GPT partition called `name` in `disk`."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True,
                                      text=True).stdout)["partitiontable"]
    (part,) = [p for p in table["partitions"] if p.get("name") == name]
    return part["start"] * table.get("sectorsize", 512)


def state_partition(disk: Path) -> str:
    """The var partition of `disk` as an e2fsprogs device name with a byte offset."""
    return f"{disk}?offset={partition(disk, 'appliance-var')}"


def debugfs(device: str, request: str) -> str:
    result = subprocess.run(["debugfs", "-R", request, device], check=False, capture_output=True, text=True)
    if result.returncode != 0 or "not found" in result.stderr or "File not found" in result.stdout:
        raise BootTestError(f"debugfs {request!r}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def provisioned_files(disk: Path, workdir: Path) -> dict:
    """Check the key, certificate and token (0600, owned by the state directory's owner); copy them out."""
    device = state_partition(disk)
    _, service_uid, service_gid = debugfs_stat(debugfs(device, "stat /lib/appliance"))
    if service_uid == 0:
        raise BootTestError("/var/lib/appliance is owned by root, not the service user")
    files = {}
    for path in ("/lib/appliance/tls/key.pem", "/lib/appliance/tls/cert.pem", "/lib/appliance/tokens"):
        mode, uid, gid = debugfs_stat(debugfs(device, f"stat {path}"))
        if (mode, uid, gid) != (0o600, service_uid, service_gid):
            raise BootTestError(f"/var{path}: mode {mode:o}, owner {uid}:{gid}; expected 600, {service_uid}:{service_gid}")
        files[f"/var{path}"] = {"mode": "0600", "uid": uid, "gid": gid}
    token = debugfs(device, "cat /lib/appliance/tokens")
    token_file = workdir / "tokens"
    token_file.write_text(token)
    token_file.chmod(0o600)
    if not re.fullmatch(r"[0-9a-f]{64}\n", token):
        raise BootTestError("the token file does not hold one 256-bit hex token")
    return files


# --- the test ---

@dataclass
class BootResult:
    boot: int
    serving_seconds: float
    fingerprint: str
    generated: bool
    power_off_seconds: float
    checks: list[str]


def run_boot(guest: Guest, timeout: float, pem_file: Path, token_file: Path | None) -> BootResult:
    checks = []
    guest.start()
    try:
        serving, pem = wait_serving(guest, timeout)
        checks.append("health SERVING over TLS")
        printed, generated = pinned_fingerprint(guest, pem)
        checks.append("presented certificate = console fingerprint")
        if pem_file.exists() and pem_file.read_bytes() != pem:
            raise BootTestError("the certificate changed since the first boot")
        pem_file.write_bytes(pem)
        asyncio.run(refused_without_token(guest, pem_file))
        checks.append("call without token: UNAUTHENTICATED")
        scrape_metrics(guest, pem)
        checks.append("/metrics over HTTPS, room microphone up")
        if token_file is not None:
            room = asyncio.run(room_with_token(guest, pem_file, token_file))
            checks.append(f"with token: sessions {room['sessions']}, Subscribe first event {room['first_event']}")
        power_off = guest.power_off()
        checks.append("ACPI power-off")
    except BaseException:
        if guest.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                guest.screendump(guest.workdir / f"screen-{guest.boot}.ppm")
        guest.kill()
        raise
    return BootResult(guest.boot, round(serving, 1), printed, generated, round(power_off, 1), checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=HERE / "build" / "appliance.raw")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds from power-on to SERVING (default 120 with KVM, 600 with TCG)")
    args = parser.parse_args(argv)
    workdir = args.image.parent / "boot-test"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    disk, ovmf_vars = workdir / "disk.raw", workdir / "OVMF_VARS.fd"
    # A sparse copy: the test's first boot must not provision the image that gets shipped.
    subprocess.run(["cp", "--sparse=always", str(args.image), str(disk)], check=True)
    accel = ("kvm" if kvm_boots(disk, workdir) else "tcg") if args.accel == "auto" else args.accel
    timeout = args.timeout or (120.0 if accel == "kvm" else 600.0)
    shutil.copyfile(OVMF_VARS, ovmf_vars)
    pem_file, token_file = workdir / "server.pem", workdir / "tokens"
    result = {"image": str(args.image), "accelerator": accel, "boots": [], "passed": False}
    try:
        first = run_boot(Guest(disk, ovmf_vars, workdir, accel, 1), timeout, pem_file, None)
        result["boots"].append(asdict(first))
        if not first.generated:
            raise BootTestError("the first boot did not generate the certificate")
        result["provisioned_files"] = provisioned_files(disk, workdir)
        second = run_boot(Guest(disk, ovmf_vars, workdir, accel, 2), timeout, pem_file, token_file)
        result["boots"].append(asdict(second))
        if second.generated or second.fingerprint != first.fingerprint:
            raise BootTestError("the second boot regenerated the certificate")
        result["passed"] = True
    except BootTestError as exc:
        result["error"] = str(exc)
    finally:
        disk.unlink(missing_ok=True)
        (workdir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    for boot in result["boots"]:
        print(f"boot {boot['boot']}: SERVING {boot['serving_seconds']} s after power-on ({accel}), "
              f"fingerprint {boot['fingerprint'][:23]}..., {'generated' if boot['generated'] else 'kept'}; "
              f"power-off {boot['power_off_seconds']} s")
        for check in boot["checks"]:
            print(f"  ok: {check}")
    if not result["passed"]:
        print(f"FAILED: {result['error']} (console logs in {workdir})", file=sys.stderr)
        return 1
    print(f"boot test passed; details in {workdir / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
