// vmm::BootSpec: the rules between GUEST, --bios, --kernel, --initrd and --append that
// `tandem` and tandemd's [vm] section share, and the names a spec gives its VM.
#include <gtest/gtest.h>

#include "vmm/boot_spec.h"

namespace tandem::vmm {
namespace {

TEST(BootSpecTest, BareGuestAndFirmwareBootsPass) {
  EXPECT_FALSE((BootSpec{.guest = "kv.elf"}.check()));
  EXPECT_FALSE((BootSpec{.bios = "fw.bin"}.check()));
  EXPECT_FALSE((BootSpec{.bios = "fw.bin", .kernel = "Image"}.check()));
  EXPECT_FALSE((BootSpec{.bios = "fw.bin", .kernel = "Image", .initrd = "i.cpio", .append = "console=ttyS0"}.check()));
  EXPECT_FALSE(BootSpec{}.check());  // nothing to boot is the caller's rule (a secondary needs none)
  EXPECT_TRUE(BootSpec{}.empty());
}

TEST(BootSpecTest, EachBrokenRuleNamesTheFieldAtFaultAndTheOther) {
  const auto both = BootSpec{.guest = "kv.elf", .bios = "fw.bin"}.check();
  ASSERT_TRUE(both);
  EXPECT_TRUE(both->excludes);
  EXPECT_EQ(both->field, BootField::Bios);
  EXPECT_EQ(both->other, BootField::Guest);

  const auto kernel = BootSpec{.kernel = "Image"}.check();
  ASSERT_TRUE(kernel);
  EXPECT_FALSE(kernel->excludes);
  EXPECT_EQ(kernel->field, BootField::Kernel);
  EXPECT_EQ(kernel->other, BootField::Bios);

  const auto initrd = BootSpec{.bios = "fw.bin", .initrd = "i.cpio"}.check();
  ASSERT_TRUE(initrd);
  EXPECT_EQ(initrd->field, BootField::Initrd);
  EXPECT_EQ(initrd->other, BootField::Kernel);

  const auto append = BootSpec{.guest = "kv.elf", .append = "console=ttyS0"}.check();
  ASSERT_TRUE(append);
  EXPECT_EQ(append->field, BootField::Append);
  EXPECT_EQ(append->other, BootField::Kernel);
}

TEST(BootSpecTest, CommandLineWordingNamesTheOptions) {
  EXPECT_NE(BootSpec::describe_for_cli(*BootSpec{.guest = "g", .bios = "b"}.check()).find("GUEST and --bios exclude each other"),
            std::string::npos);
  EXPECT_NE(BootSpec::describe_for_cli(*BootSpec{.kernel = "k"}.check()).find("--kernel needs --bios"), std::string::npos);
  EXPECT_NE(BootSpec::describe_for_cli(*BootSpec{.bios = "b", .initrd = "i"}.check()).find("--initrd needs --kernel"),
            std::string::npos);
  EXPECT_NE(BootSpec::describe_for_cli(*BootSpec{.bios = "b", .append = "a"}.check()).find("--append needs --kernel"),
            std::string::npos);
}

TEST(BootSpecTest, NamesOfTheVm) {
  const BootSpec bare{.guest = "dir/kv.elf"};
  EXPECT_EQ(bare.log_image(), "dir/kv.elf");
  EXPECT_EQ(bare.identity_image(), "dir/kv.elf");
  const BootSpec linux_boot{.bios = "fw_jump.bin", .kernel = "Image", .initrd = "i.cpio"};
  EXPECT_EQ(linux_boot.log_image(), "fw_jump.bin");     // the log digests the firmware file
  EXPECT_EQ(linux_boot.identity_image(), "Image");      // the VM is its kernel, not OpenSBI
  EXPECT_EQ((BootSpec{.bios = "fw.bin"}.identity_image()), "fw.bin");
}

}  // namespace
}  // namespace tandem::vmm
