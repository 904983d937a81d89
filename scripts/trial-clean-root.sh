#!/usr/bin/env bash
# The fresh-machine trial (issue 19): do the README's two quick-start
# commands work, exactly as written, on a clean Debian bookworm with only a
# Rust toolchain, for an ordinary user with sudo and a soft open-files limit
# of 1024?
#
#   sudo scripts/trial-clean-root.sh
#
# Run as root on a Debian or Ubuntu host (it installs debootstrap, iproute2
# and iptables with apt-get where missing). It
#
#   1. bootstraps a clean bookworm root with debootstrap (plus sudo, git and
#      ca-certificates, and the host's own certificate authorities from
#      /usr/local/share/ca-certificates; no C compiler: test.sh must
#      install one itself),
#   2. adds an ordinary user with passwordless sudo, and gives it this host's
#      active Rust toolchain (copied from rustup's home: nothing is
#      downloaded; no crate cache, nothing of the project built),
#   3. runs the root in a network namespace of its own (a veth pair with NAT
#      for Debian's mirror and crates.io; the host's own addresses dropped),
#      so that no Redis or MariaDB of the host can answer and test.sh must
#      install and start its own,
#   4. clones the repository (TRIAL_BRANCH of TRIAL_REPO) into the user's
#      home, and there, in a login shell with `ulimit -Sn 1024`, runs
#      `cargo run --release --bin seckill-server -- --admin-token change-me`
#      (checks that it listens on 127.0.0.1:7700 and that `cargo cli stats`
#      gets an answer, then stops it) and `./test.sh`; when the first could
#      not build for want of a C compiler (which the README asks for and
#      test.sh installs), the server command again after test.sh,
#   5. tears down the namespace, the mounts and whatever still runs in the
#      root (the Redis and MariaDB that test.sh started), whatever happened.
#
# The root is made anew on each run (TRIAL_REUSE=1 keeps an existing one:
# for looking into a failure, no longer a clean machine). It is left in
# place afterwards, with logs in $TRIAL_ROOT.logs/. Exits 0 when both
# commands worked (the server's, at the latest after test.sh put in cc).
#
# Settings (environment):
#   TRIAL_ROOT    where the root goes (default /var/tmp/seckill-trial-root;
#                 not inside a git work tree)
#   TRIAL_REPO    the repository to clone (default: the one holding this script)
#   TRIAL_BRANCH  its branch (default: the branch checked out there)
#   TRIAL_MIRROR  the Debian mirror (default http://deb.debian.org/debian)
#   TRIAL_NICE    niceness of the commands run in the root (default 0)
#   TRIAL_REUSE   1: use an existing root as it is
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(realpath -m "${TRIAL_ROOT:-/var/tmp/seckill-trial-root}")
readonly ROOT
readonly REPO=${TRIAL_REPO:-$here}
readonly BRANCH=${TRIAL_BRANCH:-$(git -C "$REPO" rev-parse --abbrev-ref HEAD)}
readonly MIRROR=${TRIAL_MIRROR:-http://deb.debian.org/debian}
readonly NICE=${TRIAL_NICE:-0}
readonly LOGS=$ROOT.logs
readonly NS=seckill-trial
readonly HOST_IF=sktrial0 # the host's end of the veth pair
readonly NS_IF=sktrial1   # the root's end
readonly HOST_ADDR=10.219.19.1
readonly NS_ADDR=10.219.19.2
readonly NET=10.219.19.0/30
readonly TAG=seckill-trial # comment on our iptables rules
readonly USER_NAME=trial
readonly SERVER_CMD='cargo run --release --bin seckill-server -- --admin-token change-me'
readonly BUILD_WAIT=3600 # seconds for the release build and the server to listen

say() { echo "trial: $(date -u +%H:%M:%S) $*" >&2; }
die() {
    echo "trial: error: $*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root (it makes a chroot, a network namespace and mounts)"
case $ROOT in
/ | "") die "TRIAL_ROOT must be a directory of its own" ;;
esac

apt_need() {
    local missing=() pkg bin
    for pkg in "$@"; do
        IFS=: read -r pkg bin <<<"$pkg"
        command -v "$bin" >/dev/null 2>&1 || [[ -x /usr/sbin/$bin ]] || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    say "installing ${missing[*]} on the host"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Runs a command inside the root, in its network namespace, as root.
in_root() {
    ip netns exec "$NS" chroot "$ROOT" "$@"
}

# Runs a shell command inside the root as the ordinary user, in a login
# shell (its profile puts cargo on the PATH) with the usual soft limit.
as_user() {
    in_root nice -n "$NICE" su - "$USER_NAME" -c "ulimit -Sn 1024 && $1"
}

mounted_under_root() {
    findmnt -rn -o TARGET | grep -E "^$ROOT(/|$)" || true
}

# --- teardown (also on failure) ----------------------------------------

ip_forward_before=
teardown() {
    set +e
    say "tearing down"
    local pids pid
    # Whatever still runs in the namespace or the root (the daemons that
    # test.sh started, a server left behind): all started by this trial.
    if ip netns list 2>/dev/null | grep -qw "$NS"; then
        pids=$(ip netns pids "$NS" 2>/dev/null)
    fi
    for pid in /proc/[0-9]*; do
        [[ $(readlink "$pid/root" 2>/dev/null) == "$ROOT" ]] && pids+=" ${pid#/proc/}"
    done
    if [[ -n ${pids// /} ]]; then
        # shellcheck disable=SC2086 # a list of pids
        kill $pids 2>/dev/null
        sleep 3
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null
        sleep 1
    fi
    local target
    for target in "$ROOT/dev" "$ROOT/sys" "$ROOT/proc"; do
        mountpoint -q "$target" && umount -R "$target"
    done
    ip netns del "$NS" 2>/dev/null # takes the veth pair with it
    iptables -t nat -D POSTROUTING -s "$NET" ! -o "$HOST_IF" -j MASQUERADE -m comment --comment "$TAG" 2>/dev/null
    iptables -D FORWARD -i "$HOST_IF" -j ACCEPT -m comment --comment "$TAG" 2>/dev/null
    iptables -D FORWARD -o "$HOST_IF" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT \
        -m comment --comment "$TAG" 2>/dev/null
    iptables -D INPUT -i "$HOST_IF" -j DROP -m comment --comment "$TAG" 2>/dev/null
    [[ -n $ip_forward_before ]] && sysctl -qw net.ipv4.ip_forward="$ip_forward_before"
    if [[ -n $(mounted_under_root) ]]; then
        echo "trial: warning: still mounted under $ROOT:" >&2
        mounted_under_root >&2
    fi
}

# --- the root ------------------------------------------------------------

make_root() {
    if [[ ${TRIAL_REUSE:-} == 1 && -x $ROOT/bin/bash ]]; then
        say "reusing the root $ROOT as it is"
    else
        [[ -z $(mounted_under_root) ]] || die "something is still mounted under $ROOT: $(mounted_under_root)"
        if [[ -e $ROOT ]]; then
            say "removing the old root $ROOT"
            rm -rf --one-file-system "$ROOT"
        fi
        say "debootstrap bookworm into $ROOT"
        mkdir -p "$ROOT"
        debootstrap --include=sudo,ca-certificates,git bookworm "$ROOT" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 ||
            die "debootstrap failed (see $LOGS/debootstrap.log)"
    fi
    chroot "$ROOT" id "$USER_NAME" >/dev/null 2>&1 && return 0
    say "adding the user $USER_NAME (passwordless sudo)"
    # As a Debian install leaves it: the release, its updates and security.
    cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    # The host name resolves, as on an installed machine (sudo asks).
    printf '127.0.1.1\t%s\n' "$(hostname)" >>"$ROOT/etc/hosts"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # The certificate authorities this host adds to the system's (a TLS
    # proxy on the way out, say): without them the root's HTTPS, crates.io
    # included, fails where the host's works. Not the project's business.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        say "adding the host's local certificate authorities"
        cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
        chroot "$ROOT" update-ca-certificates >/dev/null
    fi

    chroot "$ROOT" useradd --create-home --shell /bin/bash "$USER_NAME"
    echo "$USER_NAME ALL=(ALL) NOPASSWD: ALL" >"$ROOT/etc/sudoers.d/$USER_NAME"
    chmod 0440 "$ROOT/etc/sudoers.d/$USER_NAME"

    give_toolchain
}

# The host's active toolchain, as rustup would have installed it for the
# user: ~/.rustup with that one toolchain, ~/.cargo/bin with the proxies,
# and the profile line rustup's installer adds.
give_toolchain() {
    local rustup_home cargo_home toolchain home=$ROOT/home/$USER_NAME
    command -v rustup >/dev/null || die "no rustup on the host to copy a toolchain from"
    rustup_home=$(rustup show home)
    cargo_home=${CARGO_HOME:-$HOME/.cargo}
    toolchain=$(rustup show active-toolchain | cut -d' ' -f1)
    local dir
    dir=$(readlink -f "$rustup_home/toolchains/$toolchain")
    [[ -x $dir/bin/cargo ]] || die "no toolchain $toolchain in $rustup_home"
    say "copying the toolchain $toolchain ($(rustc --version))"
    mkdir -p "$home/.rustup/toolchains" "$home/.cargo"
    cp -a "$dir" "$home/.rustup/toolchains/$toolchain"
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "default"\nauto_self_update = "disable"\n' \
        "$toolchain" >"$home/.rustup/settings.toml"
    cp -a "$cargo_home/bin" "$cargo_home/env" "$home/.cargo/"
    # shellcheck disable=SC2016 # expanded by the user's shell, not here
    echo '. "$HOME/.cargo/env"' >>"$home/.profile"
    chroot "$ROOT" chown -R "$USER_NAME:$USER_NAME" "/home/$USER_NAME"
}

# --- the network ---------------------------------------------------------

make_network() {
    local uplink mtu
    uplink=$(ip route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1); exit}')
    [[ -n $uplink ]] || die "no default route on the host"
    mtu=$(cat "/sys/class/net/$uplink/mtu")
    say "network namespace $NS ($NS_ADDR, NAT through $uplink)"
    ip netns add "$NS"
    ip link add "$HOST_IF" mtu "$mtu" type veth peer name "$NS_IF" mtu "$mtu"
    ip link set "$NS_IF" netns "$NS"
    ip addr add "$HOST_ADDR/30" dev "$HOST_IF"
    ip link set "$HOST_IF" up
    ip -n "$NS" link set lo up
    ip -n "$NS" addr add "$NS_ADDR/30" dev "$NS_IF"
    ip -n "$NS" link set "$NS_IF" up
    ip -n "$NS" route add default via "$HOST_ADDR"
    ip_forward_before=$(sysctl -n net.ipv4.ip_forward)
    sysctl -qw net.ipv4.ip_forward=1
    iptables -t nat -A POSTROUTING -s "$NET" ! -o "$HOST_IF" -j MASQUERADE -m comment --comment "$TAG"
    iptables -I FORWARD -i "$HOST_IF" -j ACCEPT -m comment --comment "$TAG"
    iptables -I FORWARD -o "$HOST_IF" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT \
        -m comment --comment "$TAG"
    # Nothing of the host itself answers the root: not its Redis, not its
    # MariaDB, whatever address they listen on.
    iptables -I INPUT -i "$HOST_IF" -j DROP -m comment --comment "$TAG"
}

make_mounts() {
    mount -t proc proc "$ROOT/proc"
    mount -t sysfs sysfs "$ROOT/sys"
    mount --rbind /dev "$ROOT/dev"
    mount --make-rslave "$ROOT/dev"
}

# --- the trial -------------------------------------------------------------

port_answers() {
    ip netns exec "$NS" timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

check_clean() {
    local port
    for port in 6379 3306 7700; do
        ! port_answers "$port" || die "something answers on 127.0.0.1:$port in the root before the trial"
    done
    if in_root su - "$USER_NAME" -c 'command -v cc' >/dev/null; then
        die "the root already has a C compiler"
    fi
    in_root su - "$USER_NAME" -c 'cargo --version && rustc --version' ||
        die "the user has no working toolchain"
    ip netns exec "$NS" timeout 10 bash -c 'exec 3<>/dev/tcp/deb.debian.org/80' ||
        die "the root cannot reach Debian's mirror"
}

clone() {
    local home=$ROOT/home/$USER_NAME
    say "cloning $REPO (branch $BRANCH) into ~$USER_NAME/seckill"
    rm -rf "$home/seckill"
    git clone --quiet --no-hardlinks --branch "$BRANCH" "$REPO" "$home/seckill"
    git -C "$home/seckill" log -1 --format='trial: commit %h %s' >&2
    chroot "$ROOT" chown -R "$USER_NAME:$USER_NAME" "/home/$USER_NAME/seckill"
}

# The README's first command, in the background; passes when the server
# listens and answers `cargo cli stats`.
run_server() {
    local log=$LOGS/$1.log start=$SECONDS pid waited=0
    say "\$ $SERVER_CMD"
    as_user "cd ~/seckill && exec $SERVER_CMD" >"$log" 2>&1 &
    pid=$!
    until port_answers 7700; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$log" >&2
            # shellcheck disable=SC2016 # backquotes of cargo's message
            if grep -q 'linker `cc` not found' "$log"; then
                say "the server command cannot build: no C compiler (a prerequisite the README names)"
                return 2
            fi
            say "FAIL: the server command exited before listening"
            return 1
        fi
        if ((waited >= BUILD_WAIT)); then
            say "FAIL: nothing listens on 127.0.0.1:7700 after ${BUILD_WAIT}s"
            return 1
        fi
        sleep 2
        waited=$((SECONDS - start))
    done
    say "the server listens on 127.0.0.1:7700 after $((SECONDS - start))s (build included)"
    local ok=0
    if as_user 'cd ~/seckill && SECKILL_ADMIN_TOKEN=change-me cargo cli stats' >"$LOGS/cli-stats.log" 2>&1; then
        say "cargo cli stats answered:"
        sed 's/^/    /' "$LOGS/cli-stats.log" >&2
    else
        tail -n 30 "$LOGS/cli-stats.log" >&2
        say "FAIL: cargo cli stats got no answer"
        ok=1
    fi
    # Stops the server as Ctrl-C would (cargo run execs it: the user's
    # processes in the namespace are this command's).
    local uid user_pids p
    uid=$(chroot "$ROOT" id -u "$USER_NAME")
    user_pids=$(for p in $(ip netns pids "$NS"); do
        [[ $(stat -c %u "/proc/$p" 2>/dev/null) == "$uid" ]] && echo "$p"
    done)
    # shellcheck disable=SC2086 # a list of pids
    [[ -n $user_pids ]] && kill -INT $user_pids 2>/dev/null
    for _ in {1..30}; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "the server did not stop on SIGINT in 15s: killing it"
        # shellcheck disable=SC2086
        kill -KILL $user_pids 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
    tail -n 5 "$log" | sed 's/^/    /' >&2
    return "$ok"
}

run_tests() {
    local start=$SECONDS status=0
    say "\$ ./test.sh"
    as_user 'cd ~/seckill && ./test.sh' >"$LOGS/test.log" 2>&1 || status=$?
    say "./test.sh exited $status after $((SECONDS - start))s; its summary lines:"
    grep -E '^(test\.sh:|services:|test result:|error|failures:|test .* FAILED)' "$LOGS/test.log" |
        sed 's/^/    /' >&2 || true
    if ((status != 0)); then
        say "the end of its output:"
        tail -n 40 "$LOGS/test.log" | sed 's/^/    /' >&2
    fi
    return "$status"
}

main() {
    mkdir -p "$LOGS"
    apt_need debootstrap:debootstrap iproute2:ip iptables:iptables
    trap teardown EXIT
    trap 'exit 130' INT TERM
    make_root
    make_network
    make_mounts
    check_clean
    clone
    local server=PASS tests=PASS again='' status=0
    # As a reader would: the server first. Without a C compiler (which the
    # README names as a prerequisite) it cannot build yet; ./test.sh
    # installs one, and the server command is tried again after it.
    run_server server || status=$?
    case $status in
    0) ;;
    2) server="NEEDS CC" ;;
    *) server=FAIL ;;
    esac
    run_tests || tests=FAIL
    if [[ $server != PASS ]]; then
        again=PASS
        run_server server-after-tests || again=FAIL
    fi
    say "server command: $server${again:+ (after ./test.sh: $again)}; ./test.sh: $tests (logs in $LOGS)"
    [[ $server != FAIL && ${again:-PASS} == PASS && $tests == PASS ]]
}

main "$@"
