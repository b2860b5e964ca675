#!/usr/bin/env bash
# What a team that depends on the Java client goes through, offline:
#   1. `mvn deploy` publishes the client (jar, sources jar, pom) through the pom's
#      distributionManagement to temporary file:// repositories given as properties
#      (-Ddist.releases.url / -Ddist.snapshots.url), as a release publishes to the company
#      repository; nothing is installed into the local repository (maven.install.skip);
#   2. the example project (example/, a separate Maven project) is copied out of the
#      repository and built with a fresh, empty local repository and a settings.xml like a
#      calling team's: the company repositories (here the file:// folders of step 1) and a
#      mirror for everything else (here the client's local repository, read as a remote
#      file:// repository). Maven runs offline (-o), with only file:// allowed
#      (aether.offline.protocols), so nothing reaches the network;
#   3. the client jar the consumer resolved must be the one deployed in step 1, and the
#      example runs with the classpath Maven resolved (`java -jar`, manifest Class-Path into
#      the consumer's local repository): a call to a closed port ends UNAVAILABLE, which
#      needs the runtime dependencies (grpc-netty-shaded) and the bundled service config.
# Run by `make -C clients/java release-check`, which gives the local repository
# (MAVEN_REPO_LOCAL: ~/.m2/repository, shared by the machine, unless set).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mvn=${MVN:-mvn}
seed=${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}
quiet=(-B -ntp -Dstyle.color=never)
if [ "${VERBOSE:-}" != 1 ]; then quiet+=(-q); fi

version=$(sed -n 's:^  <version>\(.*\)</version>.*:\1:p' "$here/pom.xml" | head -1)
[ -n "$version" ] || { echo "release-check: no project version in pom.xml" >&2; exit 1; }
case "$version" in *-SNAPSHOT) kind=snapshots ;; *) kind=releases ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/java-release-check.XXXXXX")
if [ "${KEEP:-}" != 1 ]; then trap 'rm -rf "$tmp"' EXIT; else echo "release-check: keeping $tmp" >&2; fi

# Steps 1 and 2 put the client into the local repository (deploy's copy of the remote
# metadata, the seeding build's resolution) and take it out again, and the consumer must not
# find a copy there: on a repository other checkouts share, one release-check at a time
# (flock, released when this script exits; without flock, as on macOS, no guard).
mkdir -p "$seed/com/classifygateway"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$seed/com/classifygateway/.release-check.lock"
  flock 9
else
  echo "release-check: no flock here: nothing keeps a concurrent release-check out of $seed" >&2
fi

# 1. Publish.
(cd "$here" && "$mvn" "${quiet[@]}" -Dmaven.repo.local="$seed" -DskipTests -DskipITs -Dmaven.install.skip=true \
  -Ddist.releases.url="file://$tmp/releases" -Ddist.snapshots.url="file://$tmp/snapshots" deploy)
published="$tmp/$kind/com/classifygateway/classify-client/$version"
ls "$published"/*.pom >/dev/null 2>&1 ||
  { echo "release-check: nothing was deployed to $published" >&2; exit 1; }

# 2. Consume, offline, from a clean local repository.
mkdir -p "$tmp/consumer" "$tmp/seeding"
cp -R "$here/example/pom.xml" "$here/example/src" "$tmp/consumer/"
cp -R "$here/example/pom.xml" "$here/example/src" "$tmp/seeding/"
repositories() {
  cat <<XML
      <repositories>
        <repository>
          <id>classify-releases</id>
          <url>file://$tmp/releases</url>
          <snapshots><enabled>false</enabled></snapshots>
        </repository>
        <repository>
          <id>classify-snapshots</id>
          <url>file://$tmp/snapshots</url>
          <releases><enabled>false</enabled></releases>
          <snapshots><enabled>true</enabled></snapshots>
        </repository>
      </repositories>
XML
}
settings() { # $1: the mirror of everything but the company repositories, or nothing
  echo "<settings>"
  if [ -n "$1" ]; then
    printf '  <mirrors>\n    <mirror>\n      <id>central-mirror</id>\n      <mirrorOf>*,!classify-releases,!classify-snapshots</mirrorOf>\n      <url>%s</url>\n    </mirror>\n  </mirrors>\n' "$1"
  fi
  echo "  <profiles>"
  echo "    <profile>"
  echo "      <id>classify-gateway</id>"
  repositories
  echo "    </profile>"
  echo "  </profiles>"
  echo "  <activeProfiles><activeProfile>classify-gateway</activeProfile></activeProfiles>"
  echo "</settings>"
}
settings "" >"$tmp/settings-online.xml"
settings "file://$seed" >"$tmp/settings.xml"

# A consumer's dependency tree is not the client's own: the client's dependencyManagement
# (grpc-bom...) and test dependencies do not apply to it, so Maven may pick other versions
# of transitive dependencies (j2objc-annotations 3.1 through guava, where the client's
# build mediates 2.8 through protobuf-java-util). A first build of the consumer, online
# like any first build, fills the local repository with what the consumer needs; after that
# this step reads only the local repository. Then the client itself is removed from it,
# so the offline build below can only get it from the deployed repository.
(cd "$tmp/seeding" && "$mvn" "${quiet[@]}" -s "$tmp/settings-online.xml" -Dmaven.repo.local="$seed" \
  -Dclassify-client.version="$version" package)
rm -rf "$seed/com/classifygateway/classify-client"

(cd "$tmp/consumer" && "$mvn" "${quiet[@]}" -o -Daether.offline.protocols=file -s "$tmp/settings.xml" \
  -Dmaven.repo.local="$tmp/consumer/repo" -Dclassify-client.version="$version" \
  -Dclasspath.prefix=../repo/ package)

# 3. The artifact came from the publication, and the program runs.
resolved="$tmp/consumer/repo/com/classifygateway/classify-client/$version/classify-client-$version.jar"
cmp -s "$resolved" "$here/target/classify-client-$version.jar" ||
  { echo "release-check: the consumer did not resolve the jar just deployed ($resolved)" >&2; exit 1; }
set +e
out=$(java -jar "$tmp/consumer/target/classify-client-example-$version.jar" --target 127.0.0.1:1 --video v 2>&1)
rc=$?
set -e
if [ "$rc" != 1 ] || ! grep -q "classify failed: UNAVAILABLE" <<<"$out"; then
  echo "release-check: the example should fail with UNAVAILABLE against a closed port (exit 1), got exit $rc:" >&2
  echo "$out" >&2
  exit 1
fi
echo "release-check (Java): com.classifygateway:classify-client:$version deploys through distributionManagement, and a consumer builds and runs against it offline from a clean local repository"
