#!/usr/bin/env bash
# QFD Edge SDK set-up: Rust targets and components, Debian packages (QEMU, Fashion-MNIST),
# libtorch for tch (in a cache outside the repo), the .libtorch link and .cargo/config.toml.
# Safe to re-run: every step checks first and only changes what is missing. See docs/setup.md.
set -Eeuo pipefail

readonly TORCH_VERSION="2.11.0"
readonly RUST_TARGETS=(
    thumbv6m-none-eabi
    thumbv7m-none-eabi
    thumbv7em-none-eabihf
    thumbv8m.main-none-eabihf
    riscv32imac-unknown-none-elf
)
readonly RUST_COMPONENTS=(rustfmt clippy llvm-tools)
# mesa-vulkan-drivers and libvulkan1: a software Vulkan device (lavapipe), on which the tests run the burn
# engine's wgpu backend without a GPU.
readonly APT_PACKAGES=(qemu-system-arm dataset-fashion-mnist fonts-dejavu-core mesa-vulkan-drivers libvulkan1)
readonly DATASET_FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
# A wheel bigger than this is deleted once its contents are in the cache.
readonly KEEP_WHEEL_MAX_BYTES=$((500 * 1024 * 1024))

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
CACHE_ROOT="${QFD_CACHE:-${HOME:?set HOME or QFD_CACHE}/.cache/qfd-sdk}"
case "$CACHE_ROOT" in /*) ;; *) CACHE_ROOT="$PWD/$CACHE_ROOT" ;; esac

usage() {
    cat <<EOF
Usage: scripts/setup.sh [--check] [--skip-libtorch] [--cuda] [--help]

Sets up a machine for the QFD Edge SDK. Idempotent: re-running changes nothing that is already right.

  1. rustup targets ${RUST_TARGETS[*]}
     and components ${RUST_COMPONENTS[*]}
  2. Debian packages ${APT_PACKAGES[*]} (apt-get; sudo when not root)
  3. libtorch ${TORCH_VERSION} for tch 0.24, from the PyPI wheel torch==${TORCH_VERSION}, into
     \${QFD_CACHE:-\$HOME/.cache/qfd-sdk}/libtorch-${TORCH_VERSION}/   (now: ${CACHE_ROOT})
  4. the symlink .libtorch at the repo root -> that cache directory
  5. .cargo/config.toml [env] LIBTORCH = { value = ".libtorch", relative = true }

Options:
  --check          only report what is missing; change nothing; exit 1 if anything is missing
  --skip-libtorch  skip steps 3 and 4 (no download of the ~530 MB torch wheel)
  --cuda           GPU variant of step 3: keep libtorch_cuda.so and the other CUDA libraries of the
                   wheel and add the NVIDIA runtime wheels it requires (several GB), in
                   libtorch-${TORCH_VERSION}-cuda/; .libtorch then points there. Without --cuda the
                   CPU-only cache is used (libtorch_cuda.so would need cuDNN/cuBLAS at load time).
  --help           this text

Environment:
  QFD_CACHE        cache root (default \$HOME/.cache/qfd-sdk)
EOF
}

CHECK=0
SKIP_LIBTORCH=0
CUDA=0
for arg in "$@"; do
    case "$arg" in
        --check) CHECK=1 ;;
        --skip-libtorch) SKIP_LIBTORCH=1 ;;
        --cuda) CUDA=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "error: unknown option '$arg' (see scripts/setup.sh --help)" >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------------------------------------
# Output helpers
step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
done_() { printf '    ok: %s\n' "$*"; }
# die WHAT FIX: say what went wrong and what to do about it, then stop.
die() {
    printf '\nerror: %s\n' "$1" >&2
    [ -n "${2:-}" ] && printf '  what to do: %s\n' "$2" >&2
    exit 1
}
# Anything that fails without its own message still says where.
# shellcheck disable=SC2154 # rc is assigned inside the trap
trap 'rc=$?; [ "$BASH_SUBSHELL" = 0 ] && printf "\nerror: setup.sh line %s: command failed (exit %s): %s\n" "$LINENO" "$rc" "$BASH_COMMAND" >&2' ERR
CLEANUP=""   # a temporary directory to remove if the script stops early
trap '[ -n "$CLEANUP" ] && rm -rf "$CLEANUP"' EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

MISSING=()      # --check: what is missing
SUMMARY=()      # one line per step for the final summary
missing() { MISSING+=("$1"); printf '    missing: %s\n' "$1"; }

need_cmd() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed or not on PATH" "$2"
}

START_TIME=$SECONDS
cd "$REPO_ROOT"
if [ "$CHECK" = 1 ]; then
    echo "QFD Edge SDK set-up check (repo: $REPO_ROOT) - nothing will be changed"
else
    echo "QFD Edge SDK set-up (repo: $REPO_ROOT)"
fi

# ---------------------------------------------------------------------------------------------
# 1. Rust targets and components (run in the repo so a rust-toolchain file there is honoured)
step "1/5 Rust targets and components (rustup)"
need_cmd rustup "install rustup (https://rustup.rs) or add ~/.cargo/bin to PATH"
toolchain="$(rustup show active-toolchain 2>/dev/null | awk '{print $1}')" ||
    die "rustup has no active toolchain" "run: rustup default stable"
info "toolchain: $toolchain"
installed_targets="$(rustup target list --installed)" ||
    die "'rustup target list --installed' failed" "check the rustup installation (rustup show)"
want_targets=()
for t in "${RUST_TARGETS[@]}"; do
    if grep -qxF "$t" <<<"$installed_targets"; then
        done_ "target $t"
    elif [ "$CHECK" = 1 ]; then
        missing "rust target $t"
    else
        want_targets+=("$t")
    fi
done
if [ "${#want_targets[@]}" -gt 0 ]; then
    info "installing targets: ${want_targets[*]}"
    rustup target add "${want_targets[@]}" ||
        die "rustup could not install targets ${want_targets[*]}" \
            "check network access to the Rust dist server, then re-run scripts/setup.sh"
fi
installed_components="$(rustup component list --installed)" ||
    die "'rustup component list --installed' failed" "check the rustup installation (rustup show)"
want_components=()
for c in "${RUST_COMPONENTS[@]}"; do
    # llvm-tools used to be called llvm-tools-preview; accept both.
    if grep -qE "^${c}(-preview)?(-|$)" <<<"$installed_components"; then
        done_ "component $c"
    elif [ "$CHECK" = 1 ]; then
        missing "rust component $c"
    else
        want_components+=("$c")
    fi
done
if [ "${#want_components[@]}" -gt 0 ]; then
    info "installing components: ${want_components[*]}"
    rustup component add "${want_components[@]}" ||
        die "rustup could not install components ${want_components[*]}" \
            "check network access to the Rust dist server, then re-run scripts/setup.sh"
fi
SUMMARY+=("rust: ${#RUST_TARGETS[@]} targets, ${#RUST_COMPONENTS[@]} components on $toolchain")

# ---------------------------------------------------------------------------------------------
# 2. Debian packages
step "2/5 Debian packages (apt)"
pkg_installed() { [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]; }
if ! command -v dpkg-query >/dev/null 2>&1; then
    if [ "$CHECK" = 1 ]; then
        missing "dpkg (not a Debian-based system): install ${APT_PACKAGES[*]} by hand"
    else
        die "dpkg-query not found: this step needs a Debian-based system" \
            "install QEMU (qemu-system-arm) and the Fashion-MNIST IDX files by hand"
    fi
else
    want_pkgs=()
    for p in "${APT_PACKAGES[@]}"; do
        if pkg_installed "$p"; then
            done_ "package $p"
        elif [ "$CHECK" = 1 ]; then
            missing "debian package $p"
        else
            want_pkgs+=("$p")
        fi
    done
    if [ "${#want_pkgs[@]}" -gt 0 ]; then
        SUDO=()
        if [ "$(id -u)" != 0 ]; then
            command -v sudo >/dev/null 2>&1 ||
                die "installing ${want_pkgs[*]} needs root and sudo is not available" \
                    "run as root: apt-get install ${want_pkgs[*]}, then re-run scripts/setup.sh"
            SUDO=(sudo)
        fi
        info "apt-get update"
        "${SUDO[@]}" apt-get update -qq ||
            die "apt-get update failed" "check the network and /etc/apt/sources.list*, then re-run"
        apt_args=()
        # A newer qemu-utils (e.g. from backports) Breaks Debian's qemu-system-common, and apt would
        # remove it. Install the qemu-utils that matches qemu-system-arm instead, so qemu-img stays.
        if [[ " ${want_pkgs[*]} " == *" qemu-system-arm "* ]] && pkg_installed qemu-utils; then
            qsa_ver="$(apt-cache policy qemu-system-arm | awk '/Candidate:/ {print $2}')"
            qu_ver="$(dpkg-query -W -f='${Version}' qemu-utils)"
            if [ -n "$qsa_ver" ] && [ "$qsa_ver" != "(none)" ] && [ "$qu_ver" != "$qsa_ver" ] &&
                apt-cache madison qemu-utils | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF "$qsa_ver"; then
                info "note: qemu-utils $qu_ver does not go with qemu-system-arm $qsa_ver;" \
                    "installing qemu-utils $qsa_ver with it (qemu-img stays available)"
                apt_args+=(--allow-downgrades "qemu-utils=$qsa_ver")
            fi
        fi
        info "apt-get install ${want_pkgs[*]}"
        # --no-remove: never let apt silently remove an installed package to make room.
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            --no-remove "${apt_args[@]}" "${want_pkgs[@]}" ||
            die "apt-get install ${want_pkgs[*]} failed (see apt's message above)" \
                "if apt wanted to remove packages, install by hand after checking: apt-get install ${want_pkgs[*]}"
        for p in "${want_pkgs[@]}"; do
            pkg_installed "$p" || die "package $p is still not installed after apt-get install" \
                "run apt-get install $p by hand and read its output"
            done_ "installed $p"
        done
    fi

    # Where the Fashion-MNIST IDX files are (the package ships them gzipped).
    if pkg_installed dataset-fashion-mnist; then
        ds_dir=""
        while IFS= read -r f; do
            case "$f" in */train-images-idx3-ubyte | */train-images-idx3-ubyte.gz) ds_dir="$(dirname "$f")" ;; esac
        done < <(dpkg -L dataset-fashion-mnist)
        [ -n "$ds_dir" ] || die "dataset-fashion-mnist is installed but ships no train-images-idx3-ubyte" \
            "reinstall it: apt-get install --reinstall dataset-fashion-mnist"
        ds_missing=()
        ds_found=()
        for f in "${DATASET_FILES[@]}"; do
            if [ -f "$ds_dir/$f.gz" ]; then
                ds_found+=("$f.gz")
            elif [ -f "$ds_dir/$f" ]; then
                ds_found+=("$f")
            else
                ds_missing+=("$f")
            fi
        done
        if [ "${#ds_missing[@]}" -gt 0 ]; then
            if [ "$CHECK" = 1 ]; then
                missing "Fashion-MNIST files in $ds_dir: ${ds_missing[*]}"
            else
                die "Fashion-MNIST files missing in $ds_dir: ${ds_missing[*]}" \
                    "reinstall the package: apt-get install --reinstall dataset-fashion-mnist"
            fi
        else
            done_ "Fashion-MNIST IDX files in $ds_dir/: ${ds_found[*]}"
        fi
        SUMMARY+=("fashion-mnist: $ds_dir/ (${ds_found[*]:-none})")
    fi
    if pkg_installed qemu-system-arm; then
        SUMMARY+=("qemu: $(qemu-system-arm --version 2>/dev/null | head -n1)")
    fi
fi

# ---------------------------------------------------------------------------------------------
# 3. libtorch cache
if [ "$CUDA" = 1 ]; then
    LT_NAME="libtorch-${TORCH_VERSION}-cuda"
else
    LT_NAME="libtorch-${TORCH_VERSION}"
fi
LT_DIR="$CACHE_ROOT/$LT_NAME"
LT_MARKER="$LT_DIR/.qfd-setup-complete"
LINK="$REPO_ROOT/.libtorch"

libtorch_complete() {
    [ -f "$LT_MARKER" ] && [ -f "$LT_DIR/lib/libtorch_cpu.so" ] && [ -f "$LT_DIR/lib/libc10.so" ] &&
        [ -f "$LT_DIR/include/torch/script.h" ]
}

install_libtorch() {
    need_cmd python3 "install Python 3 (apt-get install python3)"
    python3 -m pip --version >/dev/null 2>&1 ||
        die "pip is not available for python3" "install it: apt-get install python3-pip"
    need_cmd ldd "install libc-bin"
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) ;;
        *) die "the libtorch step supports Linux x86_64 only (this is $(uname -s)-$(uname -m))" \
            "re-run with --skip-libtorch and build with a PyTorch ${TORCH_VERSION} install: LIBTORCH_USE_PYTORCH=1 cargo build" ;;
    esac
    mkdir -p "$CACHE_ROOT/downloads" ||
        die "cannot create $CACHE_ROOT/downloads" "set QFD_CACHE to a writable directory"
    local need_kb=$((3 * 1024 * 1024))
    [ "$CUDA" = 1 ] && need_kb=$((16 * 1024 * 1024))
    local free_kb
    free_kb="$(df -Pk "$CACHE_ROOT" | awk 'NR==2 {print $4}')"
    if [ "${free_kb:-0}" -lt "$need_kb" ]; then
        die "not enough free disk space in $CACHE_ROOT: $((free_kb / 1024)) MiB free, about $((need_kb / 1024)) MiB needed" \
            "free some space or point QFD_CACHE at a bigger disk, then re-run"
    fi

    # Leftovers of an interrupted run (we hold the lock, so nobody else is writing them).
    rm -rf "$CACHE_ROOT/.$LT_NAME".tmp.* "$CACHE_ROOT/.$LT_NAME".old.*
    local tmp="$CACHE_ROOT/.$LT_NAME.tmp.$$"
    CLEANUP="$tmp"
    mkdir -p "$tmp"
    local variant=cpu
    [ "$CUDA" = 1 ] && variant=cuda
    python3 - "$TORCH_VERSION" "$variant" "$CACHE_ROOT/downloads" "$tmp" "$KEEP_WHEEL_MAX_BYTES" <<'PY' ||
import os, re, shutil, subprocess, sys, zipfile
from pip._vendor.packaging.requirements import Requirement

version, variant, downloads, out, keep_max = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
# Fixed tags, so every machine gets the same files whatever its own Python. pip takes each
# manylinux level literally, so list all those a manylinux_2_28 system accepts.
PLAT = [a for v in range(28, 4, -1) for a in ("--platform", f"manylinux_2_{v}_x86_64")]
PLAT += [a for p in ("manylinux2014", "manylinux2010", "manylinux1") for a in ("--platform", f"{p}_x86_64")]
PLAT += ["--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none"]
# The torch wheel's own CUDA-only libraries: kept only with --cuda. libtorch_cuda.so pulls in
# cuDNN, cuBLAS, NCCL, ... at load time, and torch-sys links it whenever it is in lib/.
CUDA_ONLY = {"libtorch_cuda.so", "libtorch_cuda_linalg.so", "libc10_cuda.so", "libtorch_nvshmem.so",
             "libcaffe2_nvrtc.so"}
# Python bindings: never needed by tch.
NEVER = {"libtorch_python.so"}
# The wheel's libtorch.so is a shim that only carries DT_NEEDED libtorch_cpu.so + libtorch_cuda.so.
# The host links it with --no-as-needed (so a CUDA libtorch brings libtorch_cuda.so in); in the CPU
# cache it becomes a link to libtorch_cpu.so, so that nothing asks for the absent libtorch_cuda.so.
CPU_SHIM = "libtorch.so"
# What the CPU libraries need from the NVIDIA wheels (libtorch_cpu.so links libcudart and libcupti).
CPU_EXTRAS = {"cudart", "cupti"}
CPU_LEGACY = re.compile(r"^nvidia-cuda-(runtime|cupti)(-cu\d+)?$")
SO = re.compile(r"\.so(\.\d+)*$")

def log(msg):
    print("    " + msg, flush=True)

def readable(whl):
    try:
        with zipfile.ZipFile(whl) as z:
            return z.testzip() is None if os.path.getsize(whl) < (64 << 20) else bool(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False

def pip_download(spec):
    """Download one wheel (no deps) into downloads/ unless there already; return its path."""
    name = Requirement(spec).name.lower().replace("-", "_")
    def find():
        for f in sorted(os.listdir(downloads)):
            if f.endswith(".whl") and f.lower().startswith(name + "-"):
                ver = f.split("-")[1]
                if Requirement(spec).specifier.contains(ver, prereleases=True):
                    return os.path.join(downloads, f)
        return None
    hit = find()
    if hit and not readable(hit):
        log(f"{os.path.basename(hit)} is damaged; downloading it again")
        os.remove(hit)
        hit = None
    if hit:
        log(f"have {os.path.basename(hit)}")
        return hit
    big = " (about 530 MB, a minute or so)" if name == "torch" else ""
    log(f"downloading {spec} (pip download){big}")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--progress-bar", "off", "-q", *PLAT, "-d", downloads, spec])
    if r.returncode != 0:
        sys.exit(f"pip could not download {spec}; check access to PyPI and re-run")
    hit = find()
    if not hit or not readable(hit):
        sys.exit(f"pip reported success but no readable wheel for {spec} is in {downloads}")
    return hit

def metadata(whl):
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode()
    return [l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("Requires-Dist:")]

def applies(req, extra=""):
    env = {"platform_system": "Linux", "sys_platform": "linux", "platform_machine": "x86_64",
           "python_version": "3.11", "extra": extra}
    return req.marker is None or req.marker.evaluate(env)

def extract(whl, pick, dest):
    """Copy the members that pick(name) maps to a relative path into dest; return their count."""
    n = 0
    try:
        with zipfile.ZipFile(whl) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                rel = pick(info.filename)
                if rel is None:
                    continue
                path = os.path.join(dest, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with z.open(info) as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                if SO.search(rel):
                    os.chmod(path, 0o755)
                n += 1
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        sys.exit(f"cannot extract {whl}: {e}; delete that file and re-run")
    return n

torch_whl = pip_download(f"torch=={version}")
with zipfile.ZipFile(torch_whl) as z:
    vpy = z.read("torch/version.py").decode()
build_version = re.search(r"__version__\s*=\s*'([^']+)'", vpy).group(1)
log(f"wheel is torch {build_version}")

# Which NVIDIA wheels, at which versions: from the torch wheel's Requires-Dist, through the
# cuda-toolkit meta package's extras when torch names it (torch >= 2.9), or directly (older).
nvidia = []
for line in metadata(torch_whl):
    req = Requirement(line)
    if not applies(req):
        continue
    if req.name == "cuda-toolkit":
        tk = pip_download(f"cuda-toolkit{req.specifier}")
        extras = set(req.extras) if variant == "cuda" else set(req.extras) & CPU_EXTRAS
        for tline in metadata(tk):
            treq = Requirement(tline)
            if any(applies(treq, e) and not applies(treq) for e in extras):
                nvidia.append(f"{treq.name}{treq.specifier}")
    elif req.name.startswith("nvidia-"):
        if variant == "cuda" or CPU_LEGACY.match(req.name):
            nvidia.append(f"{req.name}{req.specifier}")
if variant == "cpu" and len(nvidia) < 2:
    sys.exit(f"torch {version}'s metadata names no CUDA runtime/CUPTI wheels; this script needs updating")

def pick_torch(name):
    if name.startswith("torch/include/"):
        return name[len("torch/"):]
    if name.startswith("torch/lib/") and name.count("/") == 2 and SO.search(name):
        base = name.rsplit("/", 1)[1]
        if base in NEVER or (variant == "cpu" and (base in CUDA_ONLY or base == CPU_SHIM)):
            return None
        return "lib/" + base
    return None

log(f"extracting torch/lib and torch/include from {os.path.basename(torch_whl)}")
count = extract(torch_whl, pick_torch, out)
log(f"{count} files")
if variant == "cpu":
    os.symlink("libtorch_cpu.so", os.path.join(out, "lib", CPU_SHIM))
    log(f"lib/{CPU_SHIM} -> libtorch_cpu.so (the wheel's one needs libtorch_cuda.so)")
def pick_nvidia(name):
    # nvidia/<pkg>/lib/*.so*, flattened into lib/ (every torch library has $ORIGIN in its RUNPATH)
    parts = name.split("/")
    if parts[0] == "nvidia" and len(parts) == 4 and parts[2] == "lib" and SO.search(name):
        return "lib/" + parts[3]
    return None
wheels = []
for spec in nvidia:
    whl = pip_download(spec)
    n = extract(whl, pick_nvidia, out)
    wheels.append(os.path.basename(whl))
    log(f"{n} shared libraries from {os.path.basename(whl)}")

with open(os.path.join(out, "build-version"), "w") as f:
    f.write(build_version + "\n")
with open(os.path.join(out, "qfd-setup.txt"), "w") as f:
    f.write(f"variant: {variant}\ntorch: {build_version}\nwheel: {os.path.basename(torch_whl)}\n")
    f.write("".join(f"nvidia wheel: {w}\n" for w in wheels))

if os.path.getsize(torch_whl) > keep_max:
    # Only delete once everything is extracted; the cache's completion marker makes re-runs skip.
    with open(os.path.join(downloads, os.path.basename(torch_whl) + ".extracted"), "w") as f:
        f.write(f"extracted into {os.path.dirname(out)}; wheel deleted to save space\n")
    os.remove(torch_whl)
    log(f"deleted {os.path.basename(torch_whl)} (over {keep_max >> 20} MB)")
PY
        die "could not build the libtorch cache (see the message above)" \
            "fix that, then re-run scripts/setup.sh (a half-done cache is never left in place)"

    # The CPU libraries must load with what is in lib/ (plus the system's libc/libstdc++).
    local lib unresolved check_libs=(libtorch.so libtorch_cpu.so libc10.so)
    [ "$CUDA" = 1 ] && check_libs+=(libtorch_cuda.so)
    for lib in "${check_libs[@]}"; do
        unresolved="$(ldd "$tmp/lib/$lib" 2>&1 | grep 'not found' | grep -v 'libcuda\.so' || true)"
        [ -z "$unresolved" ] ||
            die "$lib in the new cache has unresolved libraries: $(echo "$unresolved" | tr -s ' \t\n' ' ')" \
                "report this; the torch wheel's dependencies changed and scripts/setup.sh needs updating"
    done
    date -u +'%Y-%m-%dT%H:%M:%SZ' >"$tmp/.qfd-setup-complete"
    # Atomic swap: the final directory is either absent, complete, or (here) replaced whole.
    if [ -e "$LT_DIR" ]; then
        mv "$LT_DIR" "$CACHE_ROOT/.$LT_NAME.old.$$" ||
            die "cannot move the incomplete $LT_DIR aside" "remove it by hand, then re-run"
    fi
    mv "$tmp" "$LT_DIR" || die "cannot move the new cache into $LT_DIR" "check permissions on $CACHE_ROOT"
    CLEANUP=""
    rm -rf "$CACHE_ROOT/.$LT_NAME.old.$$"
}

if [ "$SKIP_LIBTORCH" = 1 ]; then
    step "3/5 libtorch: skipped (--skip-libtorch)"
    step "4/5 .libtorch link: skipped (--skip-libtorch)"
    SUMMARY+=("libtorch: skipped (--skip-libtorch)")
else
    step "3/5 libtorch ${TORCH_VERSION} cache ($( [ "$CUDA" = 1 ] && echo CUDA || echo CPU-only ))"
    info "cache: $LT_DIR"
    if libtorch_complete; then
        done_ "already installed ($(cat "$LT_DIR/build-version" 2>/dev/null || echo '?'))"
    elif [ "$CHECK" = 1 ]; then
        missing "libtorch cache $LT_DIR"
    else
        mkdir -p "$CACHE_ROOT" ||
            die "cannot create the cache directory $CACHE_ROOT" "set QFD_CACHE to a writable directory"
        need_cmd flock "install util-linux"
        exec 9>"$CACHE_ROOT/.setup.lock"
        flock -n 9 || die "another scripts/setup.sh is filling $CACHE_ROOT right now" \
            "wait for it to finish, then re-run"
        if libtorch_complete; then
            done_ "installed meanwhile by another run"
        else
            t0=$SECONDS
            install_libtorch
            done_ "installed in $((SECONDS - t0)) s"
        fi
        flock -u 9
    fi
    if [ -d "$LT_DIR" ]; then
        SUMMARY+=("libtorch: $LT_DIR ($(du -sh "$LT_DIR" | cut -f1), $(cat "$LT_DIR/build-version" 2>/dev/null || echo '?'))")
    fi

    # -----------------------------------------------------------------------------------------
    # 4. .libtorch -> cache
    step "4/5 .libtorch link"
    current="$(readlink "$LINK" 2>/dev/null || true)"
    if [ -e "$LINK" ] && [ ! -L "$LINK" ]; then
        if [ "$CHECK" = 1 ]; then
            missing ".libtorch is a real file or directory, not a link to $LT_DIR"
        else
            die "$LINK exists and is not a symlink; refusing to replace it" \
                "move it away (mv .libtorch .libtorch.bak), then re-run scripts/setup.sh"
        fi
    elif [ "$current" = "$LT_DIR" ]; then
        done_ ".libtorch -> $LT_DIR"
    elif [ "$CHECK" = 1 ]; then
        missing ".libtorch -> $LT_DIR (now: ${current:-absent})"
    else
        ln -s "$LT_DIR" "$LINK.tmp.$$"
        mv -T "$LINK.tmp.$$" "$LINK"
        done_ ".libtorch -> $LT_DIR (was: ${current:-absent})"
        if [ -n "$current" ] && [ -d "$REPO_ROOT/target" ]; then
            info "the link changed: torch-sys only re-checks LIBTORCH's value, not what it points to, so run"
            info "    cargo clean -p torch-sys"
            info "before the next build (it re-detects libtorch_cuda.so and relinks)"
        fi
    fi
    SUMMARY+=(".libtorch -> $(readlink "$LINK" 2>/dev/null || echo 'absent')")
fi

# ---------------------------------------------------------------------------------------------
# 5. .cargo/config.toml: [env] LIBTORCH, so cargo build needs no environment variable
step "5/5 .cargo/config.toml [env] LIBTORCH"
need_cmd python3 "install Python 3 (apt-get install python3)"
cfg_state="$(python3 - "$REPO_ROOT/.cargo/config.toml" "$CHECK" <<'PY'
import os, re, sys
path, check = sys.argv[1], sys.argv[2] == "1"
LINE = 'LIBTORCH = { value = ".libtorch", relative = true }'
WANT = {"value": ".libtorch", "relative": True}
HEADER = ("# Cargo settings for the whole workspace (committed).\n"
          "# LIBTORCH: torch-sys finds libtorch through the .libtorch link that scripts/setup.sh makes;\n"
          "# set LIBTORCH_USE_PYTORCH=1 (or LIBTORCH=...) in the environment to use another libtorch.\n")
try:
    import tomllib
except ImportError:
    tomllib = None
if not os.path.exists(path):
    if check:
        print("missing: file does not exist"); sys.exit(0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(HEADER + "\n[env]\n" + LINE + "\n")
    print("created"); sys.exit(0)
text = open(path).read()
if tomllib is not None:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        print(f"error: not valid TOML ({e}); fix it by hand"); sys.exit(0)
    env = doc.get("env", {})
    if "LIBTORCH" in env:
        if env["LIBTORCH"] == WANT:
            print("ok"); sys.exit(0)
        print(f"error: [env] LIBTORCH is {env['LIBTORCH']!r}, expected {WANT!r}; fix it by hand"); sys.exit(0)
elif re.search(r'^\s*LIBTORCH\s*=\s*\{\s*value\s*=\s*"\.libtorch"\s*,\s*relative\s*=\s*true\s*\}', text, re.M):
    print("ok"); sys.exit(0)
if check:
    print("missing: no [env] LIBTORCH entry"); sys.exit(0)
lines = text.splitlines(keepends=True)
for i, l in enumerate(lines):
    if re.match(r"^\s*\[env\]\s*(#.*)?$", l):
        lines.insert(i + 1, LINE + "\n")
        break
else:
    if tomllib is not None and "env" in doc:
        print("error: [env] is written as dotted keys or an inline table; add the LIBTORCH line by hand"); sys.exit(0)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines.append(("\n" if lines else "") + "[env]\n" + LINE + "\n")
tmp = path + ".tmp"
with open(tmp, "w") as f:
    f.write("".join(lines))
os.replace(tmp, path)
print("added")
PY
)" || die "could not check .cargo/config.toml" "see the Python error above"
cfg_summary=".cargo/config.toml: [env] LIBTORCH = .libtorch (relative to the repo root)"
case "$cfg_state" in
    ok) done_ ".cargo/config.toml already has LIBTORCH = { value = \".libtorch\", relative = true }" ;;
    created) done_ "created .cargo/config.toml" ;;
    added) done_ "added LIBTORCH to [env] in .cargo/config.toml" ;;
    missing:*) missing ".cargo/config.toml: ${cfg_state#missing: }"; cfg_summary=".cargo/config.toml: LIBTORCH missing" ;;
    error:*) die ".cargo/config.toml: ${cfg_state#error: }" \
        "edit it so that [env] has: LIBTORCH = { value = \".libtorch\", relative = true }" ;;
    *) die ".cargo/config.toml: unexpected result '$cfg_state'" "report this" ;;
esac
SUMMARY+=("$cfg_summary")

# ---------------------------------------------------------------------------------------------
# 6. Summary
step "Summary ($((SECONDS - START_TIME)) s)"
for s in "${SUMMARY[@]}"; do info "$s"; done
if [ "$CHECK" = 1 ]; then
    if [ "${#MISSING[@]}" -gt 0 ]; then
        printf '\n%s missing; run scripts/setup.sh to install:\n' "${#MISSING[@]}"
        printf '  - %s\n' "${MISSING[@]}"
        exit 1
    fi
    printf '\nNothing missing.\n'
else
    printf '\nDone. cargo build needs no environment variable; libtorch is found through .libtorch.\n'
fi
