# gnuplot script written by rtioreq-bench; run.sh renders latency.png
set terminal pngcairo size 1600,700 font ",10" noenhanced
set output 'latency.png'
set datafile missing 'NaN'
set multiplot layout 1,2 title "rtioreq round trips: AMD EPYC, 6.18.44-fc-v782 x86_64, 2 CPUs, 2026-11-29T22:23:25+0000 (one run; ns, k = 1e3, M = 1e6)"
set logscale x
set format x '%.0s%c'
set grid
set xlabel 'round trip (ns, log scale)'
set ylabel 'CDF'
set yrange [0:1]
unset key
plot 'cacheline.cdf' using 1:2 with steps lw 2 lc rgb '#000000' dt 1 title "cache-line ping-pong (acquire/release, 1 line) (p50 463 ns)", \
     'poll-1vcpu.cdf' using 1:2 with steps lw 2 lc rgb '#009e73' dt 1 title "rtioreq polling, 1 vCPU (p50 767 ns)", \
     'poll-16vcpu.cdf' using 1:2 with steps lw 2 lc rgb '#56b4e9' dt 1 title "rtioreq polling, 16 vCPUs (p50 2527 ns)", \
     'futex-dma0.cdf' using 1:2 with steps lw 2 lc rgb '#e69f00' dt 2 title "raw futex ping-pong, cpu_dma_latency=0 (p50 23295 ns)", \
     'fallback-dma0.cdf' using 1:2 with steps lw 2 lc rgb '#d55e00' dt 2 title "rtioreq fallback (notify), 1 vCPU, cpu_dma_latency=0 (p50 23551 ns)", \
     'fallback-thread-dma0.cdf' using 1:2 with steps lw 2 lc rgb '#0072b2' dt 2 title "rtioreq fallback through a client thread (handler_thread), 1 vCPU, cpu_dma_latency=0 (p50 28415 ns)", \
     'acrn-dma0.cdf' using 1:2 with steps lw 2 lc rgb '#cc79a7' dt 2 title "ACRN-style HSM (notify), 1 vCPU, cpu_dma_latency=0 (p50 27903 ns)", \
     'futex-local-dma0.cdf' using 1:2 with steps lw 2 lc rgb '#999999' dt 2 title "futex ping-pong on one CPU, cpu_dma_latency=0 (p50 7743 ns)", \
     'hybrid-dma0.cdf' using 1:2 with steps lw 2 lc rgb '#f0e442' dt 2 title "rtioreq hybrid idle, every request wakes the poller, cpu_dma_latency=0 (p50 86015 ns)", \
     'futex.cdf' using 1:2 with steps lw 2 lc rgb '#8b0000' dt 1 title "raw futex ping-pong (p50 23295 ns)", \
     'fallback.cdf' using 1:2 with steps lw 2 lc rgb '#006400' dt 1 title "rtioreq fallback (notify), 1 vCPU (p50 23551 ns)", \
     'fallback-thread.cdf' using 1:2 with steps lw 2 lc rgb '#4b0082' dt 1 title "rtioreq fallback through a client thread (handler_thread), 1 vCPU (p50 28415 ns)", \
     'acrn.cdf' using 1:2 with steps lw 2 lc rgb '#000000' dt 1 title "ACRN-style HSM (notify), 1 vCPU (p50 27903 ns)", \
     'futex-local.cdf' using 1:2 with steps lw 2 lc rgb '#009e73' dt 1 title "futex ping-pong on one CPU (p50 7743 ns)", \
     'hybrid.cdf' using 1:2 with steps lw 2 lc rgb '#56b4e9' dt 1 title "rtioreq hybrid idle, every request wakes the poller (p50 86015 ns)", \
     'acrn-cpoll.cdf' using 1:2 with steps lw 2 lc rgb '#e69f00' dt 1 title "ACRN-style HSM, completion polling, 1 vCPU (p50 15999 ns)"
set logscale y
set format y '%.0e'
set yrange [1e-6:1]
set key top right
set ylabel 'fraction of round trips slower (1 - CDF, log scale)'
plot 'cacheline.cdf' using 1:3 with steps lw 2 lc rgb '#000000' dt 1 title "cache-line ping-pong (acquire/release, 1 line) (p50 463 ns)", \
     'poll-1vcpu.cdf' using 1:3 with steps lw 2 lc rgb '#009e73' dt 1 title "rtioreq polling, 1 vCPU (p50 767 ns)", \
     'poll-16vcpu.cdf' using 1:3 with steps lw 2 lc rgb '#56b4e9' dt 1 title "rtioreq polling, 16 vCPUs (p50 2527 ns)", \
     'futex-dma0.cdf' using 1:3 with steps lw 2 lc rgb '#e69f00' dt 2 title "raw futex ping-pong, cpu_dma_latency=0 (p50 23295 ns)", \
     'fallback-dma0.cdf' using 1:3 with steps lw 2 lc rgb '#d55e00' dt 2 title "rtioreq fallback (notify), 1 vCPU, cpu_dma_latency=0 (p50 23551 ns)", \
     'fallback-thread-dma0.cdf' using 1:3 with steps lw 2 lc rgb '#0072b2' dt 2 title "rtioreq fallback through a client thread (handler_thread), 1 vCPU, cpu_dma_latency=0 (p50 28415 ns)", \
     'acrn-dma0.cdf' using 1:3 with steps lw 2 lc rgb '#cc79a7' dt 2 title "ACRN-style HSM (notify), 1 vCPU, cpu_dma_latency=0 (p50 27903 ns)", \
     'futex-local-dma0.cdf' using 1:3 with steps lw 2 lc rgb '#999999' dt 2 title "futex ping-pong on one CPU, cpu_dma_latency=0 (p50 7743 ns)", \
     'hybrid-dma0.cdf' using 1:3 with steps lw 2 lc rgb '#f0e442' dt 2 title "rtioreq hybrid idle, every request wakes the poller, cpu_dma_latency=0 (p50 86015 ns)", \
     'futex.cdf' using 1:3 with steps lw 2 lc rgb '#8b0000' dt 1 title "raw futex ping-pong (p50 23295 ns)", \
     'fallback.cdf' using 1:3 with steps lw 2 lc rgb '#006400' dt 1 title "rtioreq fallback (notify), 1 vCPU (p50 23551 ns)", \
     'fallback-thread.cdf' using 1:3 with steps lw 2 lc rgb '#4b0082' dt 1 title "rtioreq fallback through a client thread (handler_thread), 1 vCPU (p50 28415 ns)", \
     'acrn.cdf' using 1:3 with steps lw 2 lc rgb '#000000' dt 1 title "ACRN-style HSM (notify), 1 vCPU (p50 27903 ns)", \
     'futex-local.cdf' using 1:3 with steps lw 2 lc rgb '#009e73' dt 1 title "futex ping-pong on one CPU (p50 7743 ns)", \
     'hybrid.cdf' using 1:3 with steps lw 2 lc rgb '#56b4e9' dt 1 title "rtioreq hybrid idle, every request wakes the poller (p50 86015 ns)", \
     'acrn-cpoll.cdf' using 1:3 with steps lw 2 lc rgb '#e69f00' dt 1 title "ACRN-style HSM, completion polling, 1 vCPU (p50 15999 ns)"
unset multiplot
