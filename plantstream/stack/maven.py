"""Fetch JVM artifacts from Maven Central with the machine's `mvn`, once, into a shared cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from plantstream.core.errors import ToolError

LOG4J_VERSION = "2.25.3"


class FetchError(ToolError, RuntimeError):
    pass


def cache_dir() -> Path:
    root = Path(os.environ.get("PLANTSTREAM_CACHE") or Path.home() / ".cache" / "plantstream")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _mvn(args: list[str], cwd: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FetchError("Maven (`mvn`) is not on PATH. Fix: install Maven 3.8+ (Debian: apt-get install maven)")
    proc = subprocess.run([mvn, "-B", "-q", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr)[-3000:]
        raise FetchError(f"mvn {' '.join(args)} failed (exit {proc.returncode}):\n{out}")


_KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.plantstream</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <!-- the broker POM leaves out the logging backend; without it the broker logs nothing -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def kafka_libs(version: str) -> Path:
    """Directory with kafka_2.13-<version> and all its runtime jars plus log4j2."""
    home = cache_dir() / f"kafka-{version}"
    libs = home / "libs"
    if (home / ".complete").exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_KAFKA_POM.format(kafka=version, log4j=LOG4J_VERSION))
    _mvn(["dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={libs}"], home)
    if not list(libs.glob(f"kafka_2.13-{version}.jar")):
        raise FetchError(f"Maven finished but kafka_2.13-{version}.jar is not in {libs}")
    (home / ".complete").touch()
    return libs


def apicurio_app(version: str) -> Path:
    """Path of the runnable Apicurio Registry jar (the `all` tar.gz assembly, unpacked)."""
    home = cache_dir() / f"apicurio-{version}"
    app = home / "app"
    if not (home / ".complete").exists():
        home.mkdir(parents=True, exist_ok=True)
        artifact = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
        _mvn(["dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={home}"], home)
        tarball = home / f"apicurio-registry-app-{version}-all.tar.gz"
        if app.exists():
            shutil.rmtree(app)
        with tarfile.open(tarball) as tf:
            tf.extractall(app, filter="data")
        tarball.unlink()
        (home / ".complete").touch()
    # 3.0.x ships a legacy-jar layout (*-runner.jar + lib/), 3.1+ a fast-jar (quarkus-run.jar)
    for candidate in [app / "quarkus-run.jar", *app.glob("*-runner.jar")]:
        if candidate.exists():
            return candidate
    raise FetchError(f"no runnable jar in {app}; delete {home} and retry")
