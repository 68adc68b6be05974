# Sourced by the project's shell scripts that install Debian packages
# (loadtest/peers/*.sh, deploy/local-cluster.sh); we run as root, as CI does.

# apt_install installs Debian packages, NAME=VERSION (pinned) or NAME
# (whatever Debian has), unless they are installed already; apt-get update
# runs first, once.
apt_install() {
	local missing=() spec name version
	for spec in "$@"; do
		name="${spec%%=*}" version=""
		[ "$name" != "$spec" ] && version="${spec#*=}"
		if [ -n "$version" ]; then
			[ "$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)" = "$version" ] && continue
		else
			dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "ok installed" && continue
		fi
		missing+=("$spec")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "$(basename "$0"): installing ${missing[*]}" >&2
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
