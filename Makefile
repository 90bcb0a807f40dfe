# Two commands on a fresh Debian 12 machine, as root:  make up  ·  make test
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
# Ceph for the shared pool's tests (a single-node cluster the tests start): without recommends.
CEPH_PKGS := ceph-mon ceph-mgr ceph-osd ceph-mds ceph-fuse ceph-common python3-rados python3-rbd rbd-fuse
APT_PKGS := lxc lxc-dev pkg-config python3-lxc python3-nftables nftables dnsmasq-base \
            busybox-static debootstrap uidmap lxcfs iproute2 zstd xz-utils python3-venv \
            python3-dev ca-certificates openssh-client acl xfsprogs btrfs-progs attr \
            python3-btrfsutil gcc libc6-dev iperf3 iptables chromium fonts-liberation $(CEPH_PKGS)
PYTEST_ARGS ?=

# The dashboard: web/ (sources, npm lock) -> lxcloud/web/static (git-ignored), rebuilt when they change.
WEB_SRC    := $(shell find web/src -type f 2>/dev/null) web/build.mjs
WEB_OUT    := lxcloud/web/static/index.html

.PHONY: up test deps apt venv web lint bench clean
up: deps
	$(VENV)/bin/lxcloud up $(ARGS)

test: deps
	$(VENV)/bin/pytest -p no:cacheprovider $(PYTEST_ARGS)

deps: apt venv web

web: $(WEB_OUT)

# Debian's nodejs and npm only when there is no npm at all (nodesource's nodejs conflicts with
# Debian's npm package, so they are not in APT_PKGS)
web/node_modules/.installed: web/package-lock.json web/package.json
	@command -v npm >/dev/null || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(WEB_OUT): web/node_modules/.installed $(WEB_SRC)
	cd web && node build.mjs

# Installs only what is missing: a second run costs one dpkg query.
apt:
	@missing=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(APT_PKGS) 2>/dev/null \
	    | awk '$$NF!="installed"{print $$1}'; \
	  for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p >/dev/null 2>&1 || echo $$p; done); \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -n "$${missing// /}" ]; then \
	  echo "installing: $$missing"; \
	  norec=$$(for p in $$missing; do case " $(CEPH_PKGS) " in *" $$p "*) echo $$p;; esac; done); \
	  rest=$$(for p in $$missing; do case " $(CEPH_PKGS) " in *" $$p "*) ;; *) echo $$p;; esac; done); \
	  apt-get update -q && \
	  { [ -z "$$rest" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$rest; } && \
	  { [ -z "$$norec" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	      --no-install-recommends $$norec; }; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml Makefile
	@test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	 for m in nftables lxc _lxc.cpython-311-x86_64-linux-gnu.so \
	          btrfsutil.cpython-311-x86_64-linux-gnu.so; do \
	   ln -sfn /usr/lib/python3/dist-packages/$$m $$site/$$m; done
	@touch $@

lint: deps
	$(VENV)/bin/ruff check lxcloud tests bench
	$(VENV)/bin/mypy lxcloud

bench: deps
	$(PY) bench/launch.py --count 50
	$(PY) bench/api.py
	$(PY) bench/storage.py --count 50
	$(PY) bench/nics.py
	$(PY) bench/secgroups.py
	$(PY) bench/network.py
	$(PY) bench/addresses.py
	$(PY) bench/metrics.py --count 1000
	$(PY) bench/dashboard.py --count 1000

clean:
	rm -rf $(VENV) web/node_modules lxcloud/web/static
