#!/usr/bin/perl
#
# build-asn-mmdb.pl -- write a GeoLite2-ASN-schema MaxMind DB from the CSV
# files of the npm package @ip-location-db/asn, for trailhound's enrichment
# (the same two fields GeoLite2-ASN has, so any GeoLite2-ASN can replace it).
#
#   perl tools/build-asn-mmdb.pl asn-ipv4.csv asn-ipv6.csv asn.mmdb [VERSION]
#
# Usually run through scripts/build-asn-mmdb.sh, which downloads and caches.
#
# Input rows: ip_start,ip_end,asn,org (inclusive ranges; org may be quoted
# CSV with "" for a quote), UTF-8.
#
# Data licence: CC BY 4.0, by RouteViews (routeviews.org), DB-IP
# (db-ip.com, IP to ASN Lite) and the NRO (nro.net, RIR statistics), merged
# by sapics/ip-location-db. Attribution is required wherever the data is
# used; web pages that display it must link to https://db-ip.com/. See
# /work/shared/data/asn/PROVENANCE.md and the licence files in the package.
#
# Needs Debian's libmaxmind-db-writer-perl (MaxMind::DB::Writer::Tree).
use strict;
use warnings;

use MaxMind::DB::Writer::Tree;
use Socket qw(AF_INET6 inet_pton);
use Time::HiRes qw(time);

die "usage: $0 IPV4.csv IPV6.csv OUT.mmdb [PACKAGE-VERSION]\n"
    unless @ARGV == 3 || @ARGV == 4;
my ( $v4_csv, $v6_csv, $out, $version ) = @ARGV;
$version //= 'unknown version';

my %types = (
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
);

my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version    => 6,
    record_size   => 24,
    database_type => 'GeoLite2-ASN',
    languages     => ['en'],
    description   => {
        en => "ASN db built from \@ip-location-db/asn $version "
            . '(RouteViews, NRO RIR stats, DB-IP ASN Lite; CC BY 4.0)',
    },
    map_key_type_callback => sub { $types{ $_[0] } // die "no type for $_[0]\n" },

    # IPv4 lives in ::/96; ::ffff:0:0/96, 2001::/32 and 2002::/16 point
    # to it, so an IPv4-mapped, Teredo or 6to4 lookup finds IPv4 data.
    alias_ipv6_to_ipv4 => 1,

    # The data is what it is; a lookup of a reserved address simply misses.
    remove_reserved_networks => 0,
    merge_strategy           => 'none',
);

# The writer refuses inserts inside the aliased networks: those ranges of the
# IPv6 file collide with the IPv4 data and are skipped (2 in 2.3.2026061719).
my @aliased = map { [ inet_pton( AF_INET6, $_->[0] ), inet_pton( AF_INET6, $_->[1] ) ] } (
    [ '::ffff:0:0', '::ffff:ffff:ffff' ],
    [ '2001::',     '2001:0:ffff:ffff:ffff:ffff:ffff:ffff' ],
    [ '2002::',     '2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff' ],
);

sub collides_with_alias {
    my ( $start, $end ) = @_;
    my ( $s, $e ) = ( inet_pton( AF_INET6, $start ), inet_pton( AF_INET6, $end ) );
    die "bad IPv6 range $start-$end\n" unless defined $s && defined $e;

    # Packed addresses compare as big-endian numbers.
    for my $alias (@aliased) {
        return 1 if $s le $alias->[1] && $e ge $alias->[0];
    }
    return 0;
}

sub load {
    my ( $path, $is_v6 ) = @_;
    my ( $inserted, $skipped ) = ( 0, 0 );

    open my $fh, '<:encoding(UTF-8)', $path or die "$path: $!\n";
    while ( my $line = <$fh> ) {
        chomp $line;
        next if $line eq '';
        my ( $start, $end, $asn, $org ) = split /,/, $line, 4;
        die "$path:$.: expected ip_start,ip_end,asn,org\n"
            unless defined $org && $asn =~ /^[0-9]+$/ && $asn <= 4294967295;
        if ( $org =~ /^"(.*)"$/s ) {
            $org = $1;
            $org =~ s/""/"/g;
        }
        if ( $is_v6 && collides_with_alias( $start, $end ) ) {
            warn "skipping $start-$end (AS$asn): inside aliased IPv4 space\n";
            $skipped++;
            next;
        }
        $tree->insert_range(
            $start, $end,
            {
                autonomous_system_number       => $asn + 0,
                autonomous_system_organization => $org,
            }
        );
        $inserted++;
    }
    close $fh or die "$path: $!\n";
    return ( $inserted, $skipped );
}

my $t0 = time;
my ( $n4, $s4 ) = load( $v4_csv, 0 );
my ( $n6, $s6 ) = load( $v6_csv, 1 );
my $t1 = time;

# Write beside the target and rename, so a reader never sees half a file.
my $tmp = "$out.tmp.$$";
open my $fh, '>:raw', $tmp or die "$tmp: $!\n";
$tree->write_tree($fh);
close $fh or die "$tmp: $!\n";
rename $tmp, $out or die "rename $tmp -> $out: $!\n";
my $t2 = time;

printf STDERR "%s: %d IPv4 + %d IPv6 ranges (%d skipped), %d bytes; "
    . "insert %.1f s, write %.1f s\n",
    $out, $n4, $n6, $s4 + $s6, -s $out, $t1 - $t0, $t2 - $t1;
