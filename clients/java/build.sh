#!/usr/bin/env bash
# Builds the Java client from Debian's packages alone (no Maven repository is
# needed): stubs generated from ../../proto with protoc and grpc_java_plugin,
# compiled with javac into build/custos-client.jar. `build.sh test` also runs
# the JUnit 4 suite against a real custosd ($CUSTOSD, default
# ../../target/debug/custosd) on a fresh SoftHSM2 token.
#
# Needs: default-jdk-headless protobuf-compiler protobuf-compiler-grpc-java-plugin
# libgrpc-java libnetty-java libnetty-tcnative-java libnetty-tcnative-jni
# libperfmark-java libgeronimo-annotation-1.3-spec-java libprotobuf-java
# libguava-java liberror-prone-java (and, for the tests,
# junit4 libhamcrest-java libgoogle-gson-java softhsm2 openssl).
set -euo pipefail
cd "$(dirname "$0")"
proto="${CUSTOS_PROTO_DIR:-../../proto}"
j=/usr/share/java

# The runtime class path: grpc-java 1.41, its netty 4.1 transport, protobuf.
runtime=(grpc-api grpc-core grpc-context grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
  protobuf guava perfmark-api geronimo-annotation-1.3-spec error_prone_annotations
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-common netty-handler
  netty-resolver netty-transport netty-tcnative)
cp=""
for n in "${runtime[@]}"; do
  # A missing jar otherwise shows up as thousands of javac errors.
  [ -f "$j/$n.jar" ] || { echo "build.sh: $j/$n.jar is missing; install the package that ships it (see Needs: above)" >&2; exit 1; }
  cp+="$j/$n.jar:"
done

rm -rf build && mkdir -p build/gen build/classes build/test-classes build/native
protoc -I "$proto" --java_out=build/gen \
  --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin --grpc-java_out=build/gen \
  $(cd "$proto" && find custos -name '*.proto' | sort)
javac -nowarn -encoding UTF-8 -d build/classes -cp "$cp" \
  $(find build/gen src/main/java -name '*.java') 2>&1 | grep -v '^Note:' || true
[ -f build/classes/custos/client/Custos.class ] || { echo "build.sh: javac failed" >&2; exit 1; }
jar cf build/custos-client.jar -C build/classes .

# netty 4.1 looks for libnetty_tcnative.so; Debian ships libnetty-tcnative.so,
# and tcnative refuses to be loaded through a symbolic link, so copy it.
tcnative="$(dpkg -L libnetty-tcnative-jni | grep '/libnetty-tcnative\.so$' | head -1)"
cp "$tcnative" build/native/libnetty_tcnative.so
echo "build.sh: build/custos-client.jar; run with -Djava.library.path=$PWD/build/native"

if [ "${1:-}" = test ]; then
  tcp="build/custos-client.jar:$cp$j/junit4.jar:$j/hamcrest-core.jar:$j/gson.jar"
  javac -nowarn -encoding UTF-8 -d build/test-classes -cp "$tcp" $(find src/test/java -name '*.java')
  java -Djava.library.path="$PWD/build/native" -cp "build/test-classes:$tcp" \
    org.junit.runner.JUnitCore custos.client.CustosTest
fi
