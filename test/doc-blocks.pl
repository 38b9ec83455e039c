#!/usr/bin/perl
# Split the ```sql blocks of a Markdown file into DIR/NNN.sql, each starting
# with a comment naming the file and line it came from.  Blocks fenced as
# anything else (```text, ```sh, plain ```) are not examples to run.
use strict;
use warnings;

my ($md, $dir) = @ARGV;
open my $in, '<', $md or die "cannot read $md: $!";
my ($n, $block, $start) = (0, undef, 0);
while (my $line = <$in>)
{
	if (!defined $block && $line =~ /^```sql\s*$/)
	{
		$block = '';
		$start = $. + 1;
	}
	elsif (defined $block && $line =~ /^```\s*$/)
	{
		$n++;
		my $file = sprintf('%s/%03d.sql', $dir, $n);
		open my $out, '>', $file or die "cannot write $file: $!";
		print $out "-- $md:$start\n$block";
		close $out;
		undef $block;
	}
	elsif (defined $block)
	{
		$block .= $line;
	}
}
die "$md: unterminated ```sql block starting at line $start\n" if defined $block;
