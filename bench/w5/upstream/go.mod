module portway.bench/w5/upstream

go 1.19
