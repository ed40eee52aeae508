# EqueEngage -- a thin wrapper over meson + ninja.
#   make          build build/engage (installs missing Debian packages first)
#   make demo     build, load the demo data set, serve it (prints URL and admin key)
#   make test     lint, build with ASan+UBSan and with TSan, run every test suite
#   make lint     the style checks alone (scripts/lint.sh: clang-format, banned functions,
#                 time literals); make format rewrites the sources as clang-format says
#   make bench    build and run the benchmarks (see docs/benchmarks.md)
.PHONY: all build build-asan build-tsan deps test-deps lint-deps demo test lint unit e2e bench fuzz clean format

all: build

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

lint-deps:
	@scripts/install-deps.sh --lint

build: deps
	@test -f build/build.ninja || meson setup build --buildtype=release -Db_ndebug=false -Dtests=disabled >/dev/null
	@ninja -C build --quiet 2>/dev/null || ninja -C build

build-asan: test-deps
	@test -f build-asan/build.ninja || meson setup build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false -Dtests=enabled >/dev/null
	@ninja -C build-asan --quiet 2>/dev/null || ninja -C build-asan

# ThreadSanitizer: the unit tests and the threaded e2e suites again (tests/run.sh).
build-tsan: test-deps
	@test -f build-tsan/build.ninja || meson setup build-tsan --buildtype=debug -Db_sanitize=thread -Db_lundef=false -Dtests=enabled >/dev/null
	@ninja -C build-tsan --quiet 2>/dev/null || ninja -C build-tsan

demo: build
	@mkdir -p ./engage-data
	@node demo/crm/seed.mjs --sqlite ./engage-data/crm.db
	./build/engage demo --data ./engage-data --crm ./engage-data/crm.db --mapping demo/crm/mapping.json

test: lint-deps build build-asan build-tsan
	@tests/run.sh

bench: build
	@bench/run.sh

fuzz: test-deps
	@tests/fuzz/run.sh $${FUZZ_SECONDS:-60}

clean:
	rm -rf build build-asan build-tsan build-fuzz

lint: lint-deps
	@scripts/lint.sh

format: lint-deps
	clang-format -i $$(git ls-files --cached --others --exclude-standard 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h')
